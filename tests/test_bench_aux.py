"""``annotator bench aux`` end to end on a tiny world: the IK rows and NeuralAnnot's image + joints
network, run as a job runs it, scored against the set's hidden SMPL."""
from __future__ import annotations

import json

import numpy as np
import pytest

from test_pipeline import ray_local  # noqa: F401  (the module-scoped local Ray cluster)


def test_the_score_of_the_truth_is_zero_and_of_a_bent_pose_is_not(body_model):
    from annotator.bench.aux import _score, lab_people

    truth = lab_people(0, 4)
    zero = _score(body_model, truth, truth)
    assert all(v == pytest.approx(0.0, abs=1e-3) for v in zero.values())
    bent = dict(truth, body_pose=truth["body_pose"] + 0.3)
    assert all(v > 10 for v in _score(body_model, bent, truth).values())


@pytest.mark.slow
def test_bench_aux_scores_ik_and_the_image_network_on_the_same_hidden_truth(tmp_path, ray_local, body_model):
    from annotator.bench.aux import AuxSettings, format_table, run

    s = AuxSettings(seed=2, images=12, train_poses=400, steps=20, image_epochs=2, image_batch=8, crop_size=32,
                    cpus_per_worker=1, work_dir=str(tmp_path / "w"))
    result = run(s, body=body_model, log=lambda line: None)
    assert set(result["methods"]) == {"ik", "ik-noisy", "neuralannot-aux", "ik-coco17"}
    for m in result["methods"].values():
        assert all(np.isfinite(m[k]) and m[k] > 0 for k in ("mpjpe", "pa_mpjpe", "pve"))
        assert m["skill"] == pytest.approx(1 - m["pa_mpjpe"] / result["baseline"]["pa_mpjpe"])
    assert result["people"] == 12  # one person per lab image, every one annotated
    assert [p["epoch"] for p in result["neuralannot_aux_curve"]] == [-1, 0, 1]
    run_dir = tmp_path / "w" / "aux-seed-2"
    assert (run_dir / "aux_pseudo_gt" / "lab").is_dir() and (run_dir / "checkpoints" / "annotate-aux" / "model.pt").exists()
    json.dumps(result)  # what --out writes
    assert "neuralannot-aux" in format_table(result)
    # the image job's rows are the people the world plans for those images: the same baseline without the job
    planned = run(AuxSettings(seed=2, images=12, train_poses=400, steps=20, image=False), body=body_model,
                  log=lambda line: None)
    assert planned["people"] == 12 and set(planned["methods"]) == {"ik", "ik-noisy"}
    assert planned["baseline"]["pa_mpjpe"] == pytest.approx(result["baseline"]["pa_mpjpe"], rel=1e-4)
