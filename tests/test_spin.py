"""``method: spin`` end to end on a local Ray: SMPLify in the loop, the fits dictionary, its output and reports."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from test_pipeline import TINY_JOB, ray_local  # noqa: F401  (the module-scoped local Ray cluster)
from test_pipeline import read_dir as _rows


@pytest.mark.slow
def test_spin_trains_with_fits_in_the_loop_and_writes_its_final_fits(tmp_path, ray_local):
    import torch

    from annotator.config import load_job
    from annotator.run import run_job

    job = json.loads(json.dumps(TINY_JOB))
    job.update(storage={"root": str(tmp_path / "runs")}, method="spin",
               spin={"epochs": 2, "batch_size": 8, "fit_iters": 20})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    summary = run_job(load_job(path))
    run = tmp_path / "runs" / "tiny"
    assert "finetune" not in summary and summary["train-spin"]["status"] == "ran"
    out = summary["train-spin"]["outputs"]
    curve = out["curve"]
    assert [p["epoch"] for p in curve] == [-1, 0, 1]  # the initial (static) fits, then every epoch
    for p in curve[1:]:  # the time split of every epoch, and the dictionary scored against the hidden truth
        assert p["fit_seconds"] > 0 and p["train_seconds_without_fits"] > 0
        assert np.isfinite(p["fits"]["pa_mpjpe"]) and p["fits"]["rows"] > 0
    assert np.isfinite(curve[0]["fits"]["pa_mpjpe"])

    manifest, pgt, fits = (_rows(run / d / "wild") for d in ("manifest", "pseudo_gt", "fits"))
    assert set(pgt["method"]) == {"spin"} and set(fits["method"]) == {"spin-fits"}
    assert sorted(fits["sample_id"]) == sorted(pgt["sample_id"]) == sorted(manifest["sample_id"])
    assert list(fits.columns) == list(pgt.columns)  # the pseudo-GT schema
    # the rows are the final dictionary's entries
    state = torch.load(out["fits"]["path"], map_location="cpu", weights_only=True)
    where = {s: i for i, s in enumerate(state["sample_id"])}
    idx = [where[s] for s in fits["sample_id"]]
    np.testing.assert_allclose(np.stack(fits["body_pose"]), state["params"]["body_pose"][idx].numpy(), atol=1e-6)

    report = json.loads((run / "reports" / "summary.json").read_text())
    outputs = report["datasets"]["wild"]["outputs"]
    assert outputs["final"]["method"] == "spin" and outputs["fits"]["method"] == "spin-fits"
    assert "train-spin" in report["annotation_time"]["steps"]

    # another method in the same run directory: no stale fits are left for its reports
    path.write_text(yaml.safe_dump({**job, "method": "prior"}))
    run_job(load_job(path))
    assert not (run / "fits" / "wild").exists()
    report = json.loads((run / "reports" / "summary.json").read_text())
    assert "fits" not in report["datasets"]["wild"]["outputs"]
