"""The whole annotator job, tiny, on a real local Ray cluster - and through `ray job submit`."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from annotator.body.joints import COCO17_NAMES

ROOT = Path(__file__).resolve().parents[1]

TINY_JOB = {
    "name": "tiny",
    "datasets": [
        {"name": "lab", "format": "synth", "role": "aux3d", "synth": {"domain": "lab", "num_images": 24, "seed": 3}},
        {"name": "wild", "format": "synth", "role": "target", "synth": {"domain": "wild", "num_images": 8, "seed": 4}},
        {"name": "w3d", "format": "synth", "role": "eval3d", "synth": {"domain": "wild3d", "num_images": 4, "seed": 5}},
    ],
    "manifest": {"shard_size": 7},
    "crop": {"size": 32},
    "pose_prior": {"epochs": 2, "batch_size": 16},
    "pretrain": {"epochs": 1, "batch_size": 8},
    "finetune": {"epochs": 1, "batch_size": 8},
    "estimator": {"epochs": 1, "batch_size": 8},
    "ray": {"inference_batch_size": 8},
}


def write_job(tmp_path: Path, root: str, **changes) -> Path:
    job = json.loads(json.dumps(TINY_JOB))
    job["storage"] = {"root": root}
    job.update(changes)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def read_dir(path: Path):
    files = sorted(path.glob("*.parquet"))
    return pq.read_table(files).to_pandas() if files else None


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, ray_local):
    """The tiny job run once for the module: (job file, run dir, first summary)."""
    from annotator.config import load_job
    from annotator.run import run_job

    tmp = tmp_path_factory.mktemp("tiny")
    job = write_job(tmp, str(tmp / "runs"))
    summary = run_job(load_job(job))
    return job, tmp / "runs" / "tiny", summary


@pytest.mark.slow
def test_tiny_job_end_to_end(tiny_run, body_model):
    _, run, summary = tiny_run
    assert all(s["status"] == "ran" for s in summary.values()), summary

    manifest = read_dir(run / "manifest" / "wild")
    pgt = read_dir(run / "pseudo_gt" / "wild")
    prior = read_dir(run / "prior" / "wild")
    # every manifest row has exactly one pseudo-GT row (and one prior row)
    assert sorted(pgt.sample_id) == sorted(manifest.sample_id)
    assert sorted(prior.sample_id) == sorted(manifest.sample_id)
    assert pgt.sample_id.is_unique
    # shard files mirror the manifest shards
    assert sorted(p.name for p in (run / "pseudo_gt" / "wild").glob("*.parquet")) == \
        sorted(p.name for p in (run / "manifest" / "wild").glob("*.parquet"))

    # smplx reconstructs meshes straight from the rows (axis-angle, camera frame)
    import smplx

    model = smplx.create(str(run / "body_model"), model_type="smpl", gender="neutral", num_betas=10)
    t = lambda c: torch.tensor(np.stack(pgt[c].to_numpy()), dtype=torch.float32)  # noqa: E731
    out = model(global_orient=t("global_orient"), body_pose=t("body_pose"), betas=t("betas"), transl=t("transl"))
    assert out.vertices.shape == (len(pgt), body_model.num_vertices, 3)
    assert torch.isfinite(out.vertices).all()
    assert (out.vertices[..., 2] > 0).float().mean() > 0.99, "meshes lie in front of the camera"
    ours = body_model(t("global_orient"), t("body_pose"), t("betas"), t("transl"))
    assert torch.allclose(ours.vertices, out.vertices, atol=1e-5)
    assert set(pgt.body_model_checksum) == {body_model.checksum}

    report = json.loads((run / "reports" / "summary.json").read_text())
    outs = report["datasets"]["wild"]["outputs"]
    assert {"prior", "final"} <= set(outs) and outs["final"]["mpjpe"] > 0
    assert outs["final"]["method"] == "cliff" and set(outs["final"]["per_joint"]["joint_err3d_mm"]) == set(COCO17_NAMES)
    per_sample = pq.read_table(run / "reports" / "per_sample" / "wild.parquet").to_pandas()
    final = per_sample[per_sample.output == "final"]
    # per-joint 3D errors are the MPJPE's terms
    np.testing.assert_allclose(np.stack(final.joint_err3d_mm).mean(axis=1), final.mpjpe, rtol=1e-4)
    # annotation time: the cliff steps' wall seconds from the state records
    at = report["annotation_time"]
    assert set(at["steps"]) == {"train-pose-prior", "pretrain", "predict-prior", "finetune", "reinfer"}
    assert at["seconds"] == pytest.approx(sum(summary[s]["seconds"] for s in at["steps"]), abs=0.1)
    assert at["instances"] == len(manifest)

    # indirect error: an estimator trained from scratch on lab + the pseudo-GT, tested on w3d
    est = summary["train-estimator"]["outputs"]
    assert est["resumed_from"] is None and est["trained_on"] == {"aux3d": ["lab"], "pseudo_gt": ["wild"],
                                                                 "pseudo_gt_method": "cliff"}
    assert est["metrics"]["samples"] > 0
    w3d = read_dir(run / "manifest" / "w3d")
    evaluated = read_dir(run / "evaluation" / "w3d")
    assert sorted(evaluated.sample_id) == sorted(w3d.sample_id) and set(evaluated.method) == {"estimator"}
    indirect = report["indirect"]["w3d"]
    assert indirect["instances"] == len(w3d) and indirect["estimator"]["mpjpe"] > indirect["estimator"]["pa_mpjpe"] > 0
    table = pq.read_table(run / "reports" / "indirect" / "w3d.parquet").to_pandas()
    assert table.mpjpe.mean() == pytest.approx(indirect["estimator"]["mpjpe"], abs=1e-2)


@pytest.mark.slow
def test_rerun_is_a_no_op_and_a_lost_shard_is_redone_alone(tiny_run):
    from annotator.config import load_job
    from annotator.run import run_job

    job, run, _ = tiny_run
    before = read_dir(run / "pseudo_gt" / "wild").sort_values("sample_id").reset_index(drop=True)
    mtimes = {p: p.stat().st_mtime_ns for p in run.rglob("*.parquet")}
    t0 = time.monotonic()
    again = run_job(load_job(job))
    assert all(s["status"].startswith("skipped") for s in again.values()), again
    assert time.monotonic() - t0 < 30
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.parquet")} == mtimes

    # a driver killed in the middle of reinfer: one shard written, no state record yet
    shards = sorted((run / "pseudo_gt" / "wild").glob("part-*.parquet"))
    assert len(shards) >= 2
    shards[0].unlink()
    # what the killed driver left: the pending records written before reinfer started (same tokens)
    from annotator.layout import RunLayout
    from annotator.steps.base import write_pending

    for step in ("reinfer", "report"):
        token = json.loads((run / "state" / f"{step}.json").read_text()).get("output_token")
        write_pending(RunLayout(str(run)), step, token)
    resumed = run_job(load_job(job))
    assert resumed["reinfer"]["status"] == "ran" and resumed["finetune"]["status"].startswith("skipped")
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in shards[1:]), "finished shards are not rewritten"
    after = read_dir(run / "pseudo_gt" / "wild").sort_values("sample_id").reset_index(drop=True)
    assert list(after.sample_id) == list(before.sample_id)
    np.testing.assert_allclose(np.stack(after.body_pose), np.stack(before.body_pose), atol=1e-5)


@pytest.mark.slow
def test_corrupt_image_at_inference_goes_to_rejects(tiny_run):
    from annotator.config import load_job
    from annotator.run import run_job

    job, run, _ = tiny_run
    manifest = read_dir(run / "manifest" / "wild")
    victim = manifest.image_path.iloc[0]
    hit = set(manifest.sample_id[manifest.image_path == victim])
    Path(victim).write_bytes(b"not a jpeg any more")  # broken after the manifest was made
    cfg = load_job(job, ["steps=[manifest, pretrain, predict-prior]"])
    summary = run_job(cfg, force=["predict-prior"])
    out = summary["predict-prior"]["outputs"]["datasets"]["wild"]
    assert out["rejects"] == len(hit) and out["rows"] + out["rejects"] == len(manifest)
    rejects = pq.read_table(sorted((run / "rejects" / "wild").glob("predict-prior-part-*.parquet"))).to_pandas()
    assert set(rejects.sample_id) == hit
    assert set(rejects.reason) == {"corrupt_image"} and all("predict-prior" in d for d in rejects.detail)
    prior = read_dir(run / "prior" / "wild")
    assert set(prior.sample_id) == set(manifest.sample_id) - hit


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_method_smplify_fits_closer_in_2d_than_the_prior(tiny_run):
    """method: smplify re-annotates the same instances; fitting to the 2D keypoints lowers the
    2D error of the network predictions it starts from (NeuralAnnot Tab. 3: SMPLify has the
    lowest 2D error)."""
    from annotator.config import load_job
    from annotator.run import run_job

    job, run, _ = tiny_run
    summary = run_job(load_job(job, ["method=smplify", "smplify.camera_iters=10", "smplify.body_iters=40",
                                     "steps=[manifest, train-pose-prior, pretrain, predict-prior, reinfer, report]"]))
    assert summary["reinfer"]["status"] == "ran" and "finetune" not in summary
    manifest = read_dir(run / "manifest" / "wild")
    pgt = read_dir(run / "pseudo_gt" / "wild")
    rejects = summary["reinfer"]["outputs"]["datasets"]["wild"]["rejects"]
    assert len(pgt) + rejects == len(manifest) and set(pgt.method) == {"smplify"}
    prior = read_dir(run / "prior" / "wild")
    both = pgt.merge(prior[["sample_id", "err2d_px"]], on="sample_id", suffixes=("", "_prior"))
    assert both.err2d_px.mean() < 0.7 * both.err2d_px_prior.mean(), both[["err2d_px", "err2d_px_prior"]].describe()
    # this job has no estimator of its own: the cliff run's evaluation/ must not be reported as smplify's
    report = json.loads((run / "reports" / "summary.json").read_text())
    assert report["method"] == "smplify" and report["indirect"] == {}
    assert not (run / "reports" / "indirect" / "w3d.parquet").exists()
