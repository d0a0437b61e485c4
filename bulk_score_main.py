"""Scores stored image files in bulk with an exported model, on Apache Beam.

The same as the installed command `ic-anogan-bulk-score`; the flags and the job are
ic_anogan/cli/bulk_score.py's. Needs the `beam` extra: pip install 'ic-anogan[beam]'.
"""

from ic_anogan.cli import bulk_score

if __name__ == "__main__":
    bulk_score.run()
