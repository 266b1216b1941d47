"""`python -m server.segment_processor`: the name operators type for the worker (server/worker/processor.py)."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # also runnable as `python server/segment_processor.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.worker.processor import main

if __name__ == "__main__":
    sys.exit(main())
