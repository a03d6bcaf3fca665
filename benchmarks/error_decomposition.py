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
  orientation error alone costs;
* ``mean orient. error``: the mean rotation vector (degrees) of ``R_pred R_true^T`` in the
  camera frame (x right, y down, z forward): a systematic tilt shows as a non-zero mean.

Prints a markdown table (the README's quality section has it). :func:`load_run` is shared
with ``benchmarks/refit_pseudo_gt.py``.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import roma
import torch

from annotator.body.model import BodyModel, load_body_model
from annotator.config import BodyModelConfig
from annotator.evaluation.reports import direct_errors, ground_truth, read_parquet_dir, stack_column

SWAPS = (("as is", ()), ("true orient.", ("global_orient",)), ("only its orient.", ("body_pose", "betas")))


@dataclass
class BenchRun:
    root: str
    """``WORK_DIR/seed-SEED``."""
    manifest: dict
    """The ``manifest`` step's outputs (body model path, datasets)."""
    body: BodyModel
    truth: pd.DataFrame
    """`wild`'s hidden SMPL truth by ``sample_id``."""

    def pseudo_gt(self, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``method``'s `wild` pseudo-GT and the truth of the same instances, same order. A run
        without a ``prior`` variant (``--methods cliff smplify``) still has the prior predictions
        every variant of the seed shares (``base/prior/wild``): ``prior`` falls back to them."""
        where = f"{self.root}/results/{method}/pseudo_gt/wild"
        if method == "prior" and not os.path.isdir(where):
            where = f"{self.root}/base/prior/wild"
        pred = read_parquet_dir(where)
        if pred.empty:
            raise SystemExit(f"no pseudo-GT under {where}/")
        pred = pred.set_index("sample_id")
        ids = pred.index.intersection(self.truth.index)
        return pred.loc[ids], self.truth.loc[ids]


def load_run(work_dir: str, seed: int) -> BenchRun:
    root = f"{work_dir}/seed-{seed}"
    manifest = json.load(open(f"{root}/base/state/manifest.json"))["outputs"]
    body = load_body_model(BodyModelConfig(kind="smpl", path=manifest["body_model_path"]))
    return BenchRun(root, manifest, body, ground_truth("wild", manifest["datasets"]["wild"]))


def main(work_dir: str, seed: int, methods: list[str]) -> None:
    run = load_run(work_dir, seed)
    print("| method | 2D px | PA-MPJPE | " + " | ".join(f"MPJPE {name}" for name, _ in SWAPS)
          + " | mean orient. error x / y / z deg |")
    print("|---|---|---|" + "---|" * len(SWAPS) + "---|")
    for method in methods:
        pred, gt = run.pseudo_gt(method)
        cells, pa = [], None
        for _, swap in SWAPS:
            mixed = pred.copy()
            for key in swap:
                mixed[key] = gt[key].values
            err = direct_errors(mixed, gt, run.body)
            cells.append(f"{err.mpjpe.mean():.1f}")
            pa = pa if pa is not None else err.pa_mpjpe.mean()  # Procrustes removes the orientation
        rot = [roma.rotvec_to_rotmat(torch.from_numpy(stack_column(df["global_orient"], 3)).double()) for df in (pred, gt)]
        tilt = np.degrees(roma.rotmat_to_rotvec(rot[0] @ rot[1].transpose(1, 2)).mean(0).numpy())
        print(f"| {method} | {np.nanmean(pred.err2d_px):.1f} | {pa:.1f} | " + " | ".join(cells)
              + " | " + " / ".join(f"{v:+.1f}" for v in tilt) + " |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:] or ["cliff", "prior", "smplify"])
