"""ic-anogan: AnoGAN (Schlegl et al. 2017) for visual inspection of molded IC packages."""

__version__ = "0.1.0"
