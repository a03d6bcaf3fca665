"""The tiny job end to end with every output on an S3-compatible server (moto on loopback)."""
from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from annotator import storage
from tests.test_pipeline import TINY_JOB


@pytest.mark.slow
def test_tiny_job_on_s3_storage(tmp_path, s3_bucket, s3_server, body_model):
    import ray

    from annotator.config import parse_job
    from annotator.run import run_job

    job = json.loads(json.dumps(TINY_JOB))
    # the endpoint comes from the job config; credentials from the AWS environment chain
    job["storage"] = {"root": f"{s3_bucket}/annotator", "endpoint_url": s3_server, "region": "us-east-1"}
    job["datasets"][1]["synth"]["num_images"] = 4
    job["steps"] = ["manifest", "train-pose-prior", "pretrain", "predict-prior", "finetune", "reinfer"]
    cfg = parse_job(job).with_absolute_paths()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")  # after the server: workers inherit AWS_*
    try:
        summary = run_job(cfg)
    finally:
        ray.shutdown()
    assert all(s["status"] == "ran" for s in summary.values())
    run = f"{s3_bucket}/annotator/tiny"

    def table(d):
        files = storage.listdir(d, ".parquet")
        assert files, d
        return pd.concat([pq.read_table(io.BytesIO(storage.read_bytes(f))).to_pandas() for f in files])

    manifest = table(storage.join(run, "manifest", "wild"))
    pgt = table(storage.join(run, "pseudo_gt", "wild"))
    assert sorted(pgt.sample_id) == sorted(manifest.sample_id)
    assert manifest.image_path.str.startswith("s3://").all(), "synthetic images live in the bucket too"
    assert storage.exists(storage.join(run, "checkpoints", "finetune", "model.pt"))
    assert storage.exists(storage.join(run, "state", "reinfer.json"))
    assert storage.read_json(storage.join(run, "state", "reinfer.json"))["outputs"]["datasets"]["wild"]["rows"] == len(pgt)
