"""Trains an AnoGAN model on good images and calibrates its decision thresholds.

The same as the installed command `ic-anogan-train`; the flags and the job are
ic_anogan/cli/train.py's.
"""

from ic_anogan.cli import train

if __name__ == "__main__":
    train.run()
