"""Synthetic-world generation speed: ``python benchmarks/bench_synth.py [--domain wild] [--num-images 32]``.

Same as ``annotator synth bench``; prints person instances per second (wall and CPU
time), seconds per stage and the rasteriser's ms per 256 x 256 single-person frame.
"""
from __future__ import annotations

import argparse
import json

from annotator.data.synth.bench import run_bench


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", choices=["lab", "wild", "wild3d"], default="wild")
    p.add_argument("--num-images", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(json.dumps(run_bench(args.domain, args.num_images, args.seed), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
