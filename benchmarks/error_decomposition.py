"""Where each method's 3D error on the bench's `wild` set comes from: its global orientation,
its articulated pose, or its shape.

    python benchmarks/error_decomposition.py WORK_DIR SEED [METHOD ...]

reads an ``annotator bench quality --work-dir WORK_DIR --seed SEED`` run (default methods:
cliff, prior, smplify) and scores each method's pseudo-GT against the world's hidden truth
(the report's own :func:`annotator.evaluation.reports.direct_errors`: COCO-17 joints, mid-hip
aligned, mm) after swapping in true parameters:

* ``as is``: the method's own output (the bench's row);
* ``true orient.``: its body pose and shape with the *true* global orientation, i.e. the
  error left in its articulated pose and shape;
* ``only its orient.``: the true pose and shape under *its* global orientation, i.e. what its
  orientation error alone costs.

Prints a markdown table (the README's quality section has it).
"""
from __future__ import annotations

import glob
import json
import sys

import numpy as np
import pandas as pd

from annotator.body.model import load_body_model
from annotator.config import BodyModelConfig
from annotator.evaluation.reports import direct_errors, ground_truth

SWAPS = (("as is", ()), ("true orient.", ("global_orient",)), ("only its orient.", ("body_pose", "betas")))


def main(work_dir: str, seed: int, methods: list[str]) -> None:
    root = f"{work_dir}/seed-{seed}"
    manifest = json.load(open(f"{root}/base/state/manifest.json"))["outputs"]
    body = load_body_model(BodyModelConfig(kind="smpl", path=manifest["body_model_path"]))
    truth = ground_truth("wild", manifest["datasets"]["wild"])
    print("| method | 2D px | PA-MPJPE | " + " | ".join(f"MPJPE {name}" for name, _ in SWAPS) + " |")
    print("|---|---|---|" + "---|" * len(SWAPS))
    for method in methods:
        files = sorted(glob.glob(f"{root}/results/{method}/pseudo_gt/wild/*.parquet"))
        if not files:
            raise SystemExit(f"error_decomposition: no pseudo-GT under {root}/results/{method}/pseudo_gt/wild/")
        pred = pd.concat([pd.read_parquet(f) for f in files]).set_index("sample_id")
        ids = pred.index.intersection(truth.index)
        pred, gt = pred.loc[ids], truth.loc[ids]
        cells, pa = [], None
        for _, swap in SWAPS:
            mixed = pred.copy()
            for key in swap:
                mixed[key] = gt[key].values
            err = direct_errors(mixed, gt, body)
            cells.append(f"{err.mpjpe.mean():.1f}")
            pa = pa if pa is not None else err.pa_mpjpe.mean()  # Procrustes removes the orientation
        print(f"| {method} | {np.nanmean(pred.err2d_px):.1f} | {pa:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:] or ["cliff", "prior", "smplify"])
