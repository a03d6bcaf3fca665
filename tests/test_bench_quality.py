"""``annotator bench quality``: the variants' jobs, the table over common instances, the
ordering checks, and (slow) one real run of two methods on a tiny world."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from annotator.bench import quality


def test_every_variant_job_is_labelled_as_the_bench_names_it(tmp_path):
    s = quality.QualitySettings(seed=3)
    for v in quality.VARIANTS:
        cfg = quality.variant_config(s, str(tmp_path), v)
        assert cfg.method_label == v.label
        assert cfg.run_root == os.path.join(str(tmp_path), v.group)
        assert ("train-estimator" in cfg.steps) == v.indirect
        assert [d.synth.seed for d in cfg.datasets] == [300, 301, 303, 302]  # the world depends on the seed only
        assert [d.role for d in cfg.datasets] == ["aux3d", "target", "aux3d", "eval3d"]
        assert cfg.pose_prior.mocap_poses == s.mocap_poses > 0
    groups = {v.group for v in quality.VARIANTS}
    assert groups == {"base", "no-bbox", "crop-loss"}  # three pretrains in all
    crop = quality.variant_config(s, str(tmp_path), quality.VARIANT_BY_LABEL["cliff-crop-loss"])
    assert crop.pretrain.reprojection == crop.finetune.reprojection == "crop"
    no_ind = quality.variant_config(quality.QualitySettings(indirect=False), str(tmp_path), quality.VARIANTS[0])
    assert "evaluate" not in no_ind.steps and [d.role for d in no_ind.datasets] == ["aux3d", "target", "aux3d"]
    assert quality.DEFAULT_METHODS == ("cliff", "prior", "smplify")  # the ablations are behind --ablations
    second = quality.variant_config(s, str(tmp_path), quality.VARIANT_BY_LABEL["cliff-2nd"])
    assert second.second_round.enabled and "train-second-round" in second.steps


def test_the_cli_names_every_variant():
    from annotator.cli import build_parser

    bench = next(a for a in build_parser()._subparsers._group_actions[0].choices["bench"]._subparsers
                 ._group_actions[0].choices.items() if a[0] == "quality")[1]
    methods = next(a for a in bench._actions if a.dest == "methods")
    assert methods.help.split("subset of: ", 1)[1].split() == [v.label for v in quality.VARIANTS]


def _write_result(results, label, ids, err2d, mpjpe, seconds, indirect=None):
    d = results / label / "per_sample"
    d.mkdir(parents=True)
    n = len(ids)
    rows = pd.DataFrame({"sample_id": ids * 2, "output": ["prior"] * n + ["final"] * n,
                         "err2d_px": [99.0] * n + list(err2d), "mpjpe": [999.0] * n + list(mpjpe)})
    for c in ("pa_mpjpe", "pve", "err_x", "err_y", "err_z"):
        rows[c] = rows["mpjpe"] / 2
    rows.to_parquet(d / f"{quality.TARGET}.parquet", index=False)
    summary = {"annotation_time": {"seconds": seconds},
               "datasets": {quality.TARGET: {"baseline": {"mpjpe": 400.0, "pa_mpjpe": 100.0, "pve": 500.0}}}}
    if indirect:
        summary["indirect"] = {quality.EVAL3D: {"estimator": indirect}}
    (results / label / "summary.json").write_text(json.dumps(summary))


def test_summary_uses_common_instances_and_checks_the_orderings(tmp_path):
    _write_result(tmp_path, "cliff", ["w/1", "w/2", "w/3"], [10, 20, 30], [100, 200, 300], 50.0,
                  {"mpjpe": 150.0, "pa_mpjpe": 80.0, "pve": 170.0})
    # prior lost w/3 (e.g. rejected): every method is averaged over w/1 and w/2 only
    _write_result(tmp_path, "prior", ["w/1", "w/2"], [40, 40], [400, 600], 20.0)
    _write_result(tmp_path, "smplify", ["w/2", "w/1", "w/3"], [5, 5, 1000], [500, 300, 0], 30.0)
    out = quality.summarise(str(tmp_path), ["cliff", "prior", "smplify"])
    assert out["instances"] == 2
    m = out["methods"]
    assert m["cliff"]["err2d_px"] == 15.0 and m["cliff"]["mpjpe"] == 150.0 and m["cliff"]["pa_mpjpe"] == 75.0
    assert m["prior"]["mpjpe"] == 500.0 and m["smplify"]["mpjpe"] == 400.0 and m["smplify"]["err2d_px"] == 5.0
    assert m["cliff"]["seconds"] == 50.0 and m["cliff"]["indirect_mpjpe"] == 150.0 and "indirect_mpjpe" not in m["prior"]
    # skill against the baseline-mean-pose reference: 1 - 75 / 100
    assert m["cliff"]["skill"] == pytest.approx(0.25) and m["prior"]["skill"] == pytest.approx(-1.5)
    assert out["baseline"] == {"method": "baseline-mean-pose", "mpjpe": 400.0, "pa_mpjpe": 100.0, "pve": 500.0}
    met = {t["metric"]: t["met"] for t in out["targets"]}
    assert met["skill"] is False and met["orient_median_deg"] is None  # no orientation column written
    holds = {(o["better"], o["worse"], o["metric"]): o["holds"] for o in out["orderings"]}
    assert holds[("cliff", "prior", "mpjpe")] is True and holds[("cliff", "smplify", "mpjpe")] is True
    assert holds[("smplify", "cliff", "err2d_px")] is True
    assert holds[("cliff", "cliff-no-bbox", "mpjpe")] is None  # not run
    text = quality.format_table({"seed": 0, **out})
    assert "| cliff | 15.0 | 150.0 | 75.0 |" in text and "not run" in text
    _write_result(tmp_path, "cliff-no-bbox", ["w/1", "w/2"], [10, 10], [100, 100], 60.0)
    out = quality.summarise(str(tmp_path), ["cliff", "cliff-no-bbox"])
    bbox = next(o for o in out["orderings"] if o["worse"] == "cliff-no-bbox")
    assert bbox["holds"] is False and bbox["values"] == [150.0, 100.0]
    assert "DOES NOT HOLD" in quality.format_table({"seed": 0, **out})


def test_spins_fits_are_a_row_of_their_own_read_from_the_spin_run(tmp_path):
    _write_result(tmp_path, "smplify", ["w/1", "w/2"], [4, 4], [200, 200], 30.0)
    _write_result(tmp_path, "spin", ["w/1", "w/2"], [16, 16], [210, 190], 90.0)
    per_sample = tmp_path / "spin" / "per_sample" / f"{quality.TARGET}.parquet"
    rows = pd.read_parquet(per_sample)
    fits = rows[rows.output == "final"].assign(output="fits", mpjpe=[170.0, 180.0], err2d_px=[3.0, 3.0])
    pd.concat([rows, fits]).assign(pa_mpjpe=lambda d: d["mpjpe"] / 2).to_parquet(per_sample, index=False)
    assert quality.table_rows(["smplify", "spin"]) == ["smplify", "spin", "spin-fits"]
    out = quality.summarise(str(tmp_path), ["smplify", "spin"])
    m = out["methods"]
    assert m["spin"]["mpjpe"] == 200.0 and m["spin-fits"]["mpjpe"] == 175.0 and m["spin-fits"]["err2d_px"] == 3.0
    assert m["spin-fits"]["seconds"] == m["spin"]["seconds"] == 90.0  # one run makes both
    holds = {(o["better"], o["worse"]): o["holds"] for o in out["orderings"] if o["metric"] == "pa_mpjpe"}
    assert holds[("spin-fits", "smplify")] is True and holds[("spin", "smplify")] is False
    # asking for lifter brings SMPLify from the lifter (the lifter-init comparison); order as in VARIANTS
    assert quality.expand_methods(("spin", "lifter", "cliff")) == ("cliff", "lifter", "smplify-lifter-init", "spin")
    assert set(quality.expand_methods(("cliff",), ablations=True)) == {"cliff"} | {v.label for v in quality.VARIANTS if v.ablation}


def test_rescore_tabulates_kept_results_without_running_anything(tmp_path, monkeypatch):
    results = tmp_path / "seed-4" / "results"
    _write_result(results, "cliff", ["w/1", "w/2"], [10, 20], [100, 200], 50.0)
    _write_result(results, "cliff-2nd", ["w/1", "w/2"], [30, 30], [300, 300], 70.0)
    monkeypatch.setattr(quality, "run_variant", lambda *a: pytest.fail("--rescore ran a variant"))
    out = quality.run_bench(quality.QualitySettings(seed=4, work_dir=str(tmp_path), methods=("cliff", "cliff-2nd"),
                                                    rescore=True))
    assert out["runs"] == {} and out["methods"]["cliff-2nd"]["mpjpe"] == 300.0
    second = {o["metric"]: o["holds"] for o in out["orderings"] if o["better"] == "cliff-2nd"}
    assert second["mpjpe"] is False and second["indirect_pa_mpjpe"] is None
    assert (results / "learning_curve.png").exists()
    with pytest.raises(ValueError, match="--work-dir"):
        quality.run_bench(quality.QualitySettings(rescore=True))


@pytest.mark.slow
def test_bench_quality_runs_two_methods_on_a_tiny_world(tmp_path):
    """The real bench path (run_job per variant on a local Ray, shared pretrain), tiny."""
    s = quality.QualitySettings(seed=1, lab_images=16, wild3d_train_images=4, mocap_poses=50, wild_images=5,
                                lifter_poses=200, lifter_steps=20,
                                wild3d_images=3, crop_size=32,
                                pretrain_epochs=1, finetune_epochs=1, estimator_epochs=1,
                                methods=("cliff", "prior"), work_dir=str(tmp_path), ray_cpus=2)
    result = quality.run_bench(s)
    assert set(result["methods"]) == {"cliff", "prior"} and result["instances"] > 0
    # prior reused the base run's pretrain: it only re-ran the steps after finetune
    assert "pretrain" in result["runs"]["cliff"]["ran"] and "pretrain" not in result["runs"]["prior"]["ran"]
    for m in result["methods"].values():
        assert all(np.isfinite(m[c]) and m[c] > 0 for c in quality.ERROR_COLUMNS)
        assert m["indirect_mpjpe"] > m["indirect_pa_mpjpe"] > 0 and m["seconds"] > 0
        assert 0 <= m["orient_median_deg"] <= 180 and 0 <= m["orient_over_90"] <= 1
        assert m["skill"] == pytest.approx(1 - m["pa_mpjpe"] / result["baseline"]["pa_mpjpe"], abs=0.01)
    assert result["baseline"]["pa_mpjpe"] > 0 and result["baseline"]["mpjpe"] > 0
    results = tmp_path / "seed-1" / "results"
    assert (results / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert result["curves"]["pretrain"] and "target" in result["curves"]["pretrain"][0]
    assert result["curves"]["pretrain"][0]["target"]["rows"] == result["instances"]
    for label in ("cliff", "prior"):  # each method's own pseudo-GT, re-scorable by anyone
        pgt = pd.read_parquet(results / label / "pseudo_gt" / "wild")
        assert set(pgt["method"]) == {label} and len(pgt) == result["instances"]
    # the prior method's annotations are the cliff run's prior output, instance by instance
    cliff = pd.read_parquet(tmp_path / "seed-1" / "results" / "cliff" / "per_sample" / "wild.parquet")
    prior = quality.final_rows(str(tmp_path / "seed-1" / "results"), "prior")
    ref = cliff[cliff.output == "prior"].set_index("sample_id").loc[prior.index]
    np.testing.assert_allclose(prior["mpjpe"], ref["mpjpe"], rtol=1e-4)
    assert result["methods"]["prior"]["seconds"] < result["methods"]["cliff"]["seconds"]
