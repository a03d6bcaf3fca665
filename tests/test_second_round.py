"""NeuralAnnot's second round (supp. Sec. 8): a fresh network trained on the first round's pseudo-GT."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from test_pipeline import TINY_JOB, ray_local  # noqa: F401  (the module-scoped local Ray cluster)


def _rows(path):
    files = sorted(path.glob("part-*.parquet"))
    return pq.read_table(files).to_pandas() if files else None


@pytest.mark.slow
def test_the_second_round_trains_on_the_first_rounds_pseudo_gt_and_becomes_the_pseudo_gt(tmp_path, ray_local):
    from annotator.config import load_job
    from annotator.run import run_job

    job = json.loads(json.dumps(TINY_JOB))
    job.update(storage={"root": str(tmp_path / "runs")}, method="prior", second_round={"enabled": True, "epochs": 1,
                                                                                       "batch_size": 8})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    summary = run_job(load_job(path))
    run = tmp_path / "runs" / "tiny"
    assert summary["train-second-round"]["status"] == "ran" and summary["reinfer-second-round"]["status"] == "ran"
    manifest = _rows(run / "manifest" / "wild")
    first, second = _rows(run / "first_round" / "wild"), _rows(run / "pseudo_gt" / "wild")
    rejected = _rows(run / "rejects" / "wild")
    n_rej = 0 if rejected is None else int(rejected["sample_id"].isin(manifest["sample_id"]).sum())
    assert len(first) + n_rej >= len(manifest) and len(second) <= len(manifest)
    assert set(first["method"]) == {"prior"} and set(second["method"]) == {"prior-2nd"}
    assert set(second["sample_id"]) <= set(first["sample_id"])  # a row rejected in round one has no label to learn
    # a different network: its predictions differ from the first round's
    both = first.set_index("sample_id").merge(second.set_index("sample_id"), left_index=True, right_index=True, suffixes=("", "_2"))
    assert not np.allclose(np.stack(both["body_pose"]), np.stack(both["body_pose_2"]))
    trained = summary["train-second-round"]["outputs"]
    assert trained["trained_on"] == {"aux3d": ["lab"], "first_round": ["wild"]}
    # the reports score both rounds; the annotation time counts the second round's steps
    report = json.loads((run / "reports" / "summary.json").read_text())
    assert report["method"] == "prior-2nd"
    outputs = report["datasets"]["wild"]["outputs"]
    assert outputs["first_round"]["method"] == "prior" and outputs["final"]["method"] == "prior-2nd"
    assert {"train-second-round", "reinfer-second-round"} <= set(report["annotation_time"]["steps"])
    # the estimator trains on the second round's pseudo-GT
    assert summary["train-estimator"]["outputs"]["trained_on"]["pseudo_gt_method"] == "prior-2nd"

    # turned off: reinfer writes pseudo_gt/ again and the second round's steps are not planned
    path.write_text(yaml.safe_dump({**job, "second_round": {"enabled": False}}))
    again = run_job(load_job(path))
    assert "train-second-round" not in again and again["reinfer"]["status"] == "ran"
    assert set(_rows(run / "pseudo_gt" / "wild")["method"]) == {"prior"}
    assert not (run / "first_round" / "wild").exists()  # no stale first round left for the reports
    report = json.loads((run / "reports" / "summary.json").read_text())
    assert set(report["datasets"]["wild"]["outputs"]) == {"prior", "final"} and report["method"] == "prior"
