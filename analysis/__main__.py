"""`python -m analysis RESULTS_DIR [--out DIR] [--metric test_acc] [--tracking-uri URI --run-id ID]`."""
import sys

from analysis.cli import main

if __name__ == "__main__":
    sys.exit(main())
