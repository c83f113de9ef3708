"""Start the AOI Inference Agent: `python run.py` (see README.md)."""

import sys

from app.launcher import main

if __name__ == "__main__":
    sys.exit(main())
