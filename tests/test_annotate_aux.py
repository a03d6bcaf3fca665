"""Step ``annotate-aux`` (NeuralAnnot Alg. 1 lines 1-6, with the IK network or the image + joints
network): an aux3d set with 3D joints only gets SMPL pseudo-GT, and pretrain is supervised by it."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from annotator.steps.infer import attach_aux_pseudo_gt

from test_pipeline import TINY_JOB, ray_local  # noqa: F401  (the module-scoped local Ray cluster)


def _shard(tmp_path, rows: dict) -> str:
    from annotator.data.pseudo_gt import to_table

    d = tmp_path / "aux_pseudo_gt" / "lab"
    d.mkdir(parents=True, exist_ok=True)
    n = len(rows["sample_id"])
    cols = {"sample_id": np.asarray(rows["sample_id"], object), "dataset": np.full(n, "lab", object),
            "image_path": np.full(n, "x.jpg", object), "bbox": np.ones((n, 4), np.float32),
            "image_width": np.full(n, 64, np.int32), "image_height": np.full(n, 64, np.int32),
            "focal_length": np.full(n, 100.0, np.float32), "principal_point": np.full((n, 2), 32.0, np.float32),
            "global_orient": rows["global_orient"], "body_pose": np.full((n, 69), 0.5, np.float32),
            "betas": np.full((n, 10), 0.25, np.float32), "transl": np.full((n, 3), 3.0, np.float32),
            "crop_cam": np.zeros((n, 3), np.float32), "keypoint_convention": np.full(n, "coco17", object),
            "keypoints_2d": np.zeros((n, 34), np.float32), "err2d_px": np.zeros(n, np.float32),
            "err2d_norm": np.zeros(n, np.float32), "method": np.full(n, "ik", object),
            "checkpoint_id": np.full(n, "c", object), "body_model_id": np.full(n, "m", object),
            "body_model_checksum": np.full(n, "s", object)}
    pq.write_table(to_table(cols), d / "part-00000.parquet")
    return str(d)


def test_rows_without_smpl_get_the_aux_pseudo_gt_and_rows_with_smpl_keep_theirs(tmp_path):
    d = _shard(tmp_path, {"sample_id": ["lab/1", "lab/2"], "global_orient": np.full((2, 3), 0.1, np.float32)})
    own = np.arange(3, dtype=np.float32)
    batch = {"sample_id": np.array(["lab/0", "lab/1", "lab/2"], object), "dataset": np.full(3, "lab", object),
             "path": np.full(3, "/m/lab/part-00000.parquet", object), "has_smpl": np.array([True, False, True]),
             "smpl_global_orient": np.array([own, None, own], object),
             "smpl_body_pose": np.array([np.zeros(69, np.float32), None, np.zeros(69, np.float32)], object),
             "smpl_betas": np.array([np.zeros(10, np.float32), None, np.zeros(10, np.float32)], object),
             "smpl_transl": np.array([np.zeros(3, np.float32), None, np.zeros(3, np.float32)], object)}
    got = attach_aux_pseudo_gt(batch, {"lab": d})
    assert got["has_smpl"].tolist() == [True, True, True]
    np.testing.assert_allclose(got["smpl_global_orient"], [own, [0.1] * 3, own])  # lab/2 keeps its own SMPL
    assert got["smpl_body_pose"].shape == (3, 69) and got["smpl_body_pose"][1, 0] == 0.5
    assert not any(k.startswith("aux_") or k == "has_aux_pseudo_gt" for k in got)
    none = attach_aux_pseudo_gt(batch, {"lab": str(tmp_path / "nothing")})  # no output: nothing changes
    assert none["has_smpl"].tolist() == [True, False, True]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ik", "image"])
def test_a_job_whose_only_aux3d_set_has_no_smpl_runs_end_to_end(tmp_path, ray_local, kind):
    from annotator.config import load_job
    from annotator.run import run_job

    job = json.loads(json.dumps(TINY_JOB))
    job["datasets"] = [dict(job["datasets"][0], synth={"domain": "lab", "num_images": 24, "seed": 3, "smpl": False}),
                       job["datasets"][1]]
    job.update(storage={"root": str(tmp_path / "runs")}, method="prior", pose_prior={"mocap_poses": 200, "epochs": 1},
               aux_annotator={"kind": kind, "steps": 30, "batch_size": 64, "mocap_poses": 500},
               aux_image={"epochs": 2, "batch_size": 8, "lr": 1e-3},
               pretrain={**job["pretrain"], "heldout_fraction": 0.3})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    summary = run_job(load_job(path))
    run = tmp_path / "runs" / "tiny"
    manifest = pq.read_table(sorted((run / "manifest" / "lab").glob("part-*.parquet"))).to_pandas()
    assert not manifest["has_smpl"].any() and manifest["has_3d"].all()
    aux = pq.read_table(sorted((run / "aux_pseudo_gt" / "lab").glob("part-*.parquet"))).to_pandas()
    assert sorted(aux["sample_id"]) == sorted(manifest["sample_id"])  # exactly one row per manifest row
    assert set(aux["method"]) == {"ik" if kind == "ik" else "neuralannot-aux"}
    assert np.isfinite(np.stack(aux["body_pose"])).all()
    assert summary["annotate-aux"]["status"] == "ran" and summary["pretrain"]["status"] == "ran"
    assert summary["annotate-aux"]["outputs"]["datasets"]["lab"]["rows"] == len(manifest)
    if kind == "image":  # trained on Ray Train, one curve point per epoch scored against the set's hidden SMPL
        aux_curve = summary["annotate-aux"]["outputs"]["curve"]
        assert [p["epoch"] for p in aux_curve] == [-1, 0, 1]  # -1: the IK start, before training
        assert all(p["aux3d_hidden"]["rows"] == len(manifest) and np.isfinite(p["aux3d_hidden"]["pa_mpjpe"])
                   for p in aux_curve)
        assert (run / "checkpoints" / "annotate-aux" / "model.pt").exists()
    # the learning curve's held-out aux3d monitor scores rows against their own SMPL: none has it here,
    # so there is no such point (not a score against zero parameters)
    curve = summary["pretrain"]["outputs"]["curve"]
    assert curve and not any("aux3d_heldout" in point for point in curve)
