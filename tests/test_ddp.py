"""Two Ray Train workers (DDP on CPU, gloo): every training row is seen exactly once per epoch
across the ranks, the ranks' parameters are equal after every epoch, the frozen lifter inside
the network trains under DDP, and the finetune starts from the two-worker pretrain's checkpoint
and the result re-infers. (A kill of one of two workers: tests/test_faults.py.)"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pipeline import write_job  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_four_cpus():
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_two_workers_share_the_rows_and_train_with_the_lifter(tmp_path, ray_four_cpus):
    from annotator.config import load_job
    from annotator.run import run_job
    from annotator.steps.runtime import load_torch

    job = write_job(tmp_path, str(tmp_path / "runs"),
                    lifter={"enabled": True, "mocap_poses": 200, "steps": 20, "batch_size": 32, "num_cpus": 1},
                    ray={"num_workers": 2, "cpus_per_worker": 1, "inference_batch_size": 8},
                    steps=["manifest", "train-pose-prior", "train-lifter", "pretrain", "predict-prior", "finetune", "reinfer"])
    summary = run_job(load_job(job))
    assert all(s["status"] == "ran" for s in summary.values()), summary
    run = tmp_path / "runs" / "tiny"
    state = json.loads((run / "state" / "pretrain.json").read_text())
    rows = sum(pq.read_metadata(p).num_rows for p in (run / "manifest" / "lab").glob("part-*.parquet"))
    # rank 0 reports its own rows: half of the epoch's (the other half went to rank 1)
    samples = state["outputs"]["metrics"]["samples"]
    assert abs(samples - rows / 2) <= 1, (samples, rows)
    for name in ("pretrain", "finetune"):
        curve = json.loads((run / "state" / f"{name}.json").read_text())["outputs"]["curve"]
        assert curve, name
        for point in curve:  # what the two ranks did together in each epoch
            ranks = point["ranks"]
            assert ranks["seen"] == ranks["unique"] == ranks["rows"] > 0, (name, point)
            assert ranks["param_max_abs_diff"] == 0.0, (name, point)  # DDP kept the replicas equal
    weights = load_torch(state["outputs"]["weights"])["model"]
    lifter_file = load_torch(str(run / "checkpoints" / "train-lifter" / "lifter.pt"))["model"]
    for key, value in lifter_file.items():  # the lifter travelled into the checkpoint, unchanged by training
        assert torch.equal(weights["lifter." + key], value), key
    pseudo = pq.read_table(sorted((run / "pseudo_gt" / "wild").glob("part-*.parquet"))).to_pandas()
    manifest = pq.read_table(sorted((run / "manifest" / "wild").glob("part-*.parquet"))).to_pandas()
    assert sorted(pseudo["sample_id"]) == sorted(manifest["sample_id"])
