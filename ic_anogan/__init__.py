"""ic-anogan: AnoGAN (Schlegl et al. 2017) for visual inspection of molded IC packages."""

from ic_anogan.core import runtime as _runtime

__version__ = "0.1.0"

# Before anything imports TensorFlow: oneDNN on x86 CPUs where TensorFlow
# leaves it off (runtime.py says why). A user's TF_ENABLE_ONEDNN_OPTS wins.
_runtime.enable_onednn()
