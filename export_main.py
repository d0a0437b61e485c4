"""Exports a trained model as a SavedModel with the search built in, for TF Serving.

The same as the installed command `ic-anogan-export`; the flags and the job are
ic_anogan/cli/export.py's.
"""

from ic_anogan.cli import export

if __name__ == "__main__":
    export.run()
