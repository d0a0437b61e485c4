"""Fitting the GAN and the encoder, checkpoints, tf.distribute."""
