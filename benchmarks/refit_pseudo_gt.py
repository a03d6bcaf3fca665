"""SMPLify started from a bench method's pseudo-GT: does a per-person refit improve it?

    python benchmarks/refit_pseudo_gt.py WORK_DIR SEED METHOD

reads an ``annotator bench quality --work-dir WORK_DIR --seed SEED`` run, starts the product's
batched SMPLify (:func:`annotator.fitting.smplify.smplify`, default ``SmplifyConfig``, the run's
VPoser) from ``METHOD``'s `wild` pseudo-GT and its camera, fits the `wild` 2D labels, and scores
(the report's :func:`annotator.evaluation.reports.direct_errors`) the camera stage alone and the
full fit. Started from ``prior`` it reproduces the bench's ``smplify`` row.
"""
from __future__ import annotations

import glob
import json
import sys

import numpy as np
import pandas as pd
import torch

from annotator.body.model import load_body_model
from annotator.body.prior import load_vposer
from annotator.config import BodyModelConfig, SmplifyConfig
from annotator.evaluation.reports import direct_errors, ground_truth
from annotator.fitting.smplify import smplify

PARAMS = ("global_orient", "body_pose", "betas", "transl")


def stacked(series: pd.Series) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(x, np.float32) for x in series]))


def read_dir(path: str) -> pd.DataFrame:
    files = sorted(glob.glob(f"{path}/*.parquet"))
    if not files:
        raise SystemExit(f"refit_pseudo_gt: no Parquet under {path}")
    return pd.concat([pd.read_parquet(f) for f in files]).set_index("sample_id")


def main(work_dir: str, seed: int, method: str) -> None:
    base = f"{work_dir}/seed-{seed}/base"
    manifest = json.load(open(f"{base}/state/manifest.json"))["outputs"]
    body = load_body_model(BodyModelConfig(kind="smpl", path=manifest["body_model_path"]))
    vposer = load_vposer(json.load(open(f"{base}/state/train-prior.json"))["outputs"]["vposer"]).eval()
    truth = ground_truth("wild", manifest["datasets"]["wild"])
    rows = read_dir(f"{base}/manifest/wild")
    pred = read_dir(f"{work_dir}/seed-{seed}/results/{method}/pseudo_gt/wild")
    ids = pred.index.intersection(truth.index)
    pred, gt, rows = pred.loc[ids], truth.loc[ids], rows.loc[ids]
    kps = stacked(rows.keypoints_2d).reshape(len(ids), -1, 3)
    kps[..., 2] = (kps[..., 2] > 0).float()
    focal, pp = stacked(pred.focal_length), stacked(pred.principal_point)
    init = {k: stacked(pred[k]) for k in PARAMS}
    for name, cfg in (("camera stage only", SmplifyConfig(body_iters=0)), ("full fit", SmplifyConfig())):
        fit = smplify(body, kps, rows.keypoint_convention.iloc[0], focal, pp, init, cfg, vposer=vposer)
        out = pred.copy()
        for k, v in fit.params().items():
            out[k] = list(v.detach().numpy())
        err = direct_errors(out, gt, body)
        print(f"{method} + SMPLify, {name}: 2D {float(fit.err2d_px.mean()):.1f} px, MPJPE {err.mpjpe.mean():.1f}, "
              f"PA-MPJPE {err.pa_mpjpe.mean():.1f}, orientation median {np.median(err.orient_err_deg):.1f} deg")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
