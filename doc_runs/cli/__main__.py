"""`python -m doc_runs.cli ...`: the doc-runs command."""

import sys

from doc_runs.cli import main

if __name__ == "__main__":
    sys.exit(main())
