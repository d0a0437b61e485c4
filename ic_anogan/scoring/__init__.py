"""The latent search, anomaly maps, thresholds, the Scorer interface."""
