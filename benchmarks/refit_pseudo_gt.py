"""SMPLify started from a bench method's pseudo-GT: does a per-person refit improve it?

    python benchmarks/refit_pseudo_gt.py WORK_DIR SEED METHOD

reads an ``annotator bench quality --work-dir WORK_DIR --seed SEED`` run, starts the product's
batched SMPLify (:func:`annotator.fitting.smplify.smplify`, default ``SmplifyConfig``, the run's
VPoser) from ``METHOD``'s `wild` pseudo-GT and its camera, fits the `wild` 2D labels, and scores
(the report's :func:`annotator.evaluation.reports.direct_errors`) the camera stage alone and the
full fit. Started from ``prior`` it reproduces the bench's ``smplify`` row.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from error_decomposition import load_run  # benchmarks/, beside this script

from annotator.body.prior import load_vposer
from annotator.config import SmplifyConfig
from annotator.evaluation.reports import direct_errors, read_parquet_dir, stack_column
from annotator.fitting.smplify import smplify

PARAMS = (("global_orient", 3), ("body_pose", 69), ("betas", 10), ("transl", 3))


def main(work_dir: str, seed: int, method: str) -> None:
    run = load_run(work_dir, seed)
    vposer = load_vposer(json.load(open(f"{run.root}/base/state/train-pose-prior.json"))["outputs"]["vposer"]).eval()
    pred, gt = run.pseudo_gt(method)
    rows = read_parquet_dir(f"{run.root}/base/manifest/wild").set_index("sample_id").loc[pred.index]
    kps = torch.from_numpy(stack_column(rows.keypoints_2d)).reshape(len(rows), -1, 3)
    kps[..., 2] = (kps[..., 2] > 0).float()
    focal = torch.from_numpy(pred.focal_length.to_numpy(np.float32))
    pp = torch.from_numpy(stack_column(pred.principal_point, 2))
    init = {k: torch.from_numpy(stack_column(pred[k], w)) for k, w in PARAMS}
    for name, cfg in (("camera stage only", SmplifyConfig(body_iters=0)), ("full fit", SmplifyConfig())):
        fit = smplify(run.body, kps, rows.keypoint_convention.iloc[0], focal, pp, init, cfg, vposer=vposer)
        out = pred.copy()
        for k, v in fit.params().items():
            out[k] = list(v.detach().numpy())
        err = direct_errors(out, gt, run.body)
        print(f"{method} + SMPLify, {name}: 2D {float(fit.err2d_px.mean()):.1f} px, MPJPE {err.mpjpe.mean():.1f}, "
              f"PA-MPJPE {err.pa_mpjpe.mean():.1f}, orientation median {np.median(err.orient_err_deg):.1f} deg")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
