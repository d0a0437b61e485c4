"""Metrics, scores.csv, figures."""
