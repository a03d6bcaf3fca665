"""``annotator bench smplify``: the SMPLify baseline on synthetic people with known truth.

Renders a small synthetic ``wild3d`` set (its ground truth holds the exact projected
COCO-17 keypoints and SMPL parameters), fits every person from the mean pose with the
default :class:`~annotator.config.SmplifyConfig`, and prints seconds per person, the 2D
error of the fit and its pelvis-aligned / Procrustes-aligned 3D joint errors.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import torch

from annotator.body.joints import TRAIN_CONVENTION, get_convention, select_keypoints
from annotator.config import BodyModelConfig, SmplifyConfig
from annotator.evaluation import metrics

MM = 1000.0


def run(num_images: int = 64, seed: int = 0, batch_size: int = 64) -> dict:
    from annotator.body import load_body_model
    from annotator.data.synth import generate
    from annotator.fitting import smplify

    body = load_body_model(BodyModelConfig())
    with tempfile.TemporaryDirectory() as d:
        gt = pq.read_table(generate("wild3d", num_images, seed, d, model=body).ground_truth).to_pandas()
    t = lambda c: torch.tensor(np.stack(gt[c].to_numpy()), dtype=torch.float32)  # noqa: E731
    n = len(gt)
    kps = torch.cat([t("keypoints_2d").view(n, -1, 2), torch.ones(n, 17, 1)], dim=-1)  # exact, all joints
    cfg = SmplifyConfig(batch_size=batch_size)
    t0 = time.perf_counter()
    fit = smplify(body, kps, TRAIN_CONVENTION, t("focal_length"), t("principal_point"), None, cfg)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        pred = select_keypoints(body(**fit.params()).keypoints, body.keypoint_names, TRAIN_CONVENTION) * MM
        true = t("joints_3d").view(n, -1, 3) * MM
    root = list(get_convention(TRAIN_CONVENTION).root)
    return {"instances": n, "seconds_per_instance": seconds / n, "err2d_px": float(fit.err2d_px.nanmean()),
            "mpjpe_mm": float(metrics.mpjpe(pred, true, root=root).mean()),
            "pa_mpjpe_mm": float(metrics.pa_mpjpe(pred, true).mean()),
            "camera_iters": cfg.camera_iters, "body_iters": cfg.body_iters}


def format_result(r: dict) -> str:
    return (f"SMPLify from the mean pose on {r['instances']} synthetic people (exact COCO-17 keypoints, "
            f"{r['camera_iters']} + {r['body_iters']} iterations):\n"
            f"  {r['seconds_per_instance'] * 1000:.1f} ms per person, 2D error {r['err2d_px']:.2f} px, "
            f"MPJPE {r['mpjpe_mm']:.0f} mm, PA-MPJPE {r['pa_mpjpe_mm']:.0f} mm")
