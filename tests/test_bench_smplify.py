"""`annotator bench smplify` on a few synthetic people: the fit lands on the exact keypoints."""
import pytest

from annotator.bench.smplify import format_result, run

pytestmark = pytest.mark.usefixtures("single_thread")


def test_bench_smplify_small(body_model):
    r = run(num_images=4, seed=1, batch_size=16)
    assert r["instances"] >= 4 and r["seconds_per_instance"] > 0
    assert r["err2d_px"] < 8.0  # measured 3.7 px on 100 people; from ~35 px at the mean pose
    assert 0 < r["pa_mpjpe_mm"] <= r["mpjpe_mm"] + 1e-6
    assert "ms per person" in format_result(r)
