"""Images: files, IDX, synthetic packages, preprocessing, the tf.data pipeline."""
