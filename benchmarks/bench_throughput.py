"""Inference pipeline throughput vs the bare model, actor scaling, memory, decode, finetune.

    python benchmarks/bench_throughput.py [--instances 2000] [--big-instances 20000]
        [--batch-size 64] [--crop-size 64] [--out FILE.json]

Same as ``annotator bench throughput`` (see :mod:`annotator.bench.throughput`).
"""
from __future__ import annotations

import argparse
import sys

from annotator.bench.cli import add_commands


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_throughput.py")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "throughput", *argv])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
