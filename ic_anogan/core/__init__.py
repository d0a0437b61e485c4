"""Errors, atomic writes, the CPU runtime: no TensorFlow, no settings."""
