"""What the commands run: train, calibrate, score, export."""
