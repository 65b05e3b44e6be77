"""``python -m bench [--quick] [--only NAME ...]``: one JSON line per figure on stdout."""

from __future__ import annotations

import sys

from bench.harness import main

if __name__ == "__main__":
    sys.exit(main())
