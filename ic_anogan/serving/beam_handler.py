"""A Beam `ModelHandler` that scores file bytes through one named signature of an export.

Beam's own `TFModelHandlerNumpy` cannot load these exports: it goes through
`tf.keras.models.load_model`, which Keras 3 refuses for a SavedModel
(apache/beam#30616), and it stacks examples with numpy. This handler loads
the SavedModel with `tf.saved_model.load`, exactly as TF Serving's loader
sees it, and calls one signature (`score_encoded` or `M_encoded`) with the
batch's bytes as a string tensor. It never stacks bytes into a numpy array:
numpy's fixed-width bytes drop trailing NUL bytes, and a BMP can end in them.

A batch the graph refuses (a truncated PNG, say) is scored again element by
element, so one bad file is named and the rest of the batch is scored. The
loaded model is a `SignatureRunner`, whose only method takes and returns
picklable values, so it also works behind Beam's shared-model proxy
(`large_model=True` or `model_copies`), where calls cross processes.
"""

from __future__ import annotations

import logging
import resource
from typing import Iterable, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

log = logging.getLogger(__name__)

# The key of a result that failed in the graph; its value says why.
ERROR_KEY = "error"


def peak_memory_mb() -> float:
    """This process's peak resident memory in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class SignatureRunner:
    """One loaded export and one of its signatures, called on lists of file bytes."""

    def __init__(self, saved_model: str, signature: str, tf_threads: Optional[int] = None):
        import tensorflow as tf
        if tf_threads:
            # Before the first op of this process, so that several workers on one
            # machine share its cores instead of each starting one thread per core.
            tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(tf_threads)
        self._tf = tf
        self._function = tf.saved_model.load(saved_model).signatures[signature]

    def score(self, payloads: list) -> list:
        """One dict of served outputs (numpy) per file, or {ERROR_KEY: reason} for a file
        the graph could not score; a failed batch is retried file by file."""
        try:
            return self._split(self._call(payloads))
        except self._tf.errors.OpError as batch_error:
            if len(payloads) == 1:
                return [{ERROR_KEY: _reason(batch_error)}]
        results = []
        for payload in payloads:
            try:
                results.extend(self._split(self._call([payload])))
            except self._tf.errors.OpError as e:
                results.append({ERROR_KEY: _reason(e)})
        return results

    def peak_memory_mb(self) -> float:
        """The peak memory of the process holding the model (the proxy's, when shared)."""
        return peak_memory_mb()

    def _call(self, payloads: list) -> dict:
        # A list of Python bytes becomes a string tensor with every byte kept.
        outputs = self._function(image_bytes=self._tf.constant(payloads, dtype=self._tf.string))
        return {name: value.numpy() for name, value in outputs.items()}

    @staticmethod
    def _split(outputs: dict) -> list:
        count = len(next(iter(outputs.values())))
        return [{name: value[i] for name, value in outputs.items()} for i in range(count)]


def _reason(error: Exception) -> str:
    """What a graph error says about the input, without TensorFlow's framing: the last
    line that is not a node name, stack note or header ("Invalid PNG data, size 2114")."""
    lines = [line.strip() for line in getattr(error, "message", str(error)).splitlines()]
    said = [line for line in lines if line and not line.startswith(
        ("[[", "Graph execution error", "Detected at node", "<stack traces"))]
    message = said[-1].split(" [[")[0] if said else type(error).__name__
    return f"the export could not score it: {message[:300]}"


class ExportSignatureHandler(ModelHandler):
    """Scores file bytes through a named signature of an export (see the module doc)."""

    def __init__(self, saved_model: str, signature: str, *, tf_threads: Optional[int] = None,
                 min_batch_size: int = 1, max_batch_size: int = 32, large_model: bool = False,
                 model_copies: Optional[int] = None):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size,
                         large_model=large_model, model_copies=model_copies)
        self.saved_model, self.signature, self.tf_threads = saved_model, signature, tf_threads

    def load_model(self) -> SignatureRunner:
        log.info("loading %s, signature %s%s", self.saved_model, self.signature,
                 f", {self.tf_threads} TensorFlow threads" if self.tf_threads else "")
        return SignatureRunner(self.saved_model, self.signature, self.tf_threads)

    def run_inference(self, batch: Sequence[bytes], model: SignatureRunner,
                      inference_args: Optional[dict] = None) -> Iterable[PredictionResult]:
        results = model.score(list(batch))
        return [PredictionResult(example, inference) for example, inference in zip(batch, results)]

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(payload) for payload in batch)

    def get_metrics_namespace(self) -> str:
        return "ic_anogan"
