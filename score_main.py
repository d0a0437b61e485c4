"""Scores images with a trained AnoGAN model and writes scores, metrics and figures.

The same as the installed command `ic-anogan-score`; the flags and the job are
ic_anogan/cli/score.py's.
"""

from ic_anogan.cli import score

if __name__ == "__main__":
    score.run()
