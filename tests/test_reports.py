"""Report numbers on constructed data: per-joint 2D/3D errors, ground truth from manifest
SMPL columns, annotation time, the method labels of the ablations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from annotator.body.joints import COCO17_NAMES
from annotator.config import parse_job
from annotator.evaluation import reports

K = len(COCO17_NAMES)


def _job(**changes) -> dict:
    job = {"name": "t", "datasets": [{"name": "w", "format": "coco", "role": "target", "path": "x.json"}]}
    job.update(changes)
    return job


def test_joint_errors_2d_nan_where_unannotated_or_failed():
    rng = np.random.default_rng(0)
    ann = np.concatenate([rng.uniform(0, 100, (3, K, 2)), np.ones((3, K, 1))], axis=-1).astype(np.float32)
    ann[0, 5, 2] = 0  # unannotated joint
    pred = ann[..., :2].copy()
    pred[1, :, 0] += 3.0
    pred[1, :, 1] += 4.0  # every joint of sample 1 off by a 3-4-5 triangle
    pred[2, 7] = np.nan  # a failed prediction
    err = reports.joint_errors_2d(pred, ann)
    assert err.shape == (3, K)
    assert np.isnan(err[0, 5]) and np.isnan(err[2, 7])
    np.testing.assert_allclose(err[1], 5.0, atol=1e-5)
    np.testing.assert_allclose(np.nan_to_num(err[0]), 0.0, atol=1e-6)


def _params(n: int, seed: int) -> pd.DataFrame:
    g = torch.Generator().manual_seed(seed)
    rows = {"global_orient": torch.randn(n, 3, generator=g) * 0.3, "body_pose": torch.randn(n, 69, generator=g) * 0.2,
            "betas": torch.randn(n, 10, generator=g) * 0.5, "transl": torch.randn(n, 3, generator=g) + torch.tensor([0, 0, 5.0])}
    return pd.DataFrame({k: list(v.numpy()) for k, v in rows.items()}, index=[f"s/{i}" for i in range(n)])


def test_direct_errors_per_joint_average_to_mpjpe(body_model):
    gt = _params(4, 0)
    same = reports.direct_errors(gt, gt, body_model)
    np.testing.assert_allclose(same[["mpjpe", "pa_mpjpe", "pve"]].to_numpy(), 0.0, atol=1e-3)
    pred = _params(4, 1)
    pred["transl"] = gt["transl"]
    err = reports.direct_errors(pred, gt, body_model)
    per_joint = np.stack(err["joint_err3d_mm"].to_numpy())
    assert per_joint.shape == (4, K) and (err["mpjpe"] > 50).all()
    np.testing.assert_allclose(per_joint.mean(axis=1), err["mpjpe"].to_numpy(), rtol=1e-5)
    assert (err["pa_mpjpe"] < err["mpjpe"]).all()
    # a pure translation changes no root-aligned error
    moved = gt.copy()
    moved["transl"] = [t + np.array([1.0, -2.0, 3e5], np.float32) for t in gt["transl"]]  # a degenerate camera
    far = reports.direct_errors(moved, gt, body_model)
    np.testing.assert_allclose(far[["mpjpe", "pa_mpjpe", "pve"]].to_numpy(), 0.0, atol=1e-3)


def test_ground_truth_from_manifest_smpl_columns(tmp_path):
    p = _params(3, 2)
    manifest = pd.DataFrame({"sample_id": list(p.index), "smpl_global_orient": list(p["global_orient"]),
                             "smpl_body_pose": list(p["body_pose"]), "smpl_betas": list(p["betas"]),
                             "smpl_transl": [p["transl"].iloc[0], None, p["transl"].iloc[2]],
                             "has_smpl": [True, True, False]})
    shard = tmp_path / "part-00000.parquet"
    manifest.to_parquet(shard, index=False)
    gt = reports.ground_truth("s", {"shards": [str(shard)]})
    assert list(gt.index) == ["s/0", "s/1"]  # has_smpl False is not truth
    np.testing.assert_array_equal(gt.loc["s/1", "transl"], np.zeros(3))  # missing transl: root-aligned anyway
    np.testing.assert_allclose(gt.loc["s/0", "body_pose"], p.loc["s/0", "body_pose"])
    assert reports.ground_truth("s", {"shards": []}) is None


def test_annotation_time_sums_the_methods_steps():
    seconds = {"manifest": 9.0, "train-pose-prior": 1.0, "pretrain": 100.0, "predict-prior": 10.0, "finetune": 50.0,
               "reinfer": 20.0, "report": 3.0}
    cliff = reports.annotation_time(parse_job(_job()), seconds, instances=362)
    assert cliff["seconds"] == 181.0 and set(cliff["steps"]) == {"train-pose-prior", "pretrain", "predict-prior",
                                                                 "finetune", "reinfer"}
    assert cliff["instances_per_s"] == pytest.approx(2.0, abs=1e-3) and cliff["method"] == "cliff"
    prior = reports.annotation_time(parse_job(_job(method="prior")), seconds, instances=360)
    assert prior["seconds"] == 120.0 and prior["instances_per_s"] == 3.0


@pytest.mark.parametrize("changes,label", [
    ({}, "cliff"),
    ({"method": "prior"}, "prior"),
    ({"method": "smplify"}, "smplify"),
    ({"network": {"use_bbox_info": False}}, "cliff-no-bbox"),
    ({"finetune": {"reprojection": "crop"}}, "cliff-crop-loss"),
    ({"pretrain": {"reprojection": "crop"}}, "cliff"),  # the finetune makes cliff's annotations
    ({"finetune": {"use_prior_reg": False}}, "cliff-no-prior-reg"),
    ({"method": "prior", "finetune": {"use_prior_reg": False}}, "prior"),
    ({"network": {"use_bbox_info": False}, "finetune": {"reprojection": "crop"}}, "cliff-no-bbox-crop-loss"),
])
def test_method_labels_name_the_ablations(changes, label):
    assert parse_job(_job(**changes)).method_label == label
