"""Job config: validation errors name the key; overrides; shipped jobs validate."""
from pathlib import Path

import pytest

from annotator.config import ConfigError, load_job, parse_job

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"name": "t", "datasets": [{"name": "w", "format": "coco", "role": "target", "path": "a.json"}]}


def test_unknown_key_is_named():
    bad = dict(MINIMAL, pretrain={"epochs": 2, "learning_rate": 0.1})
    with pytest.raises(ConfigError) as e:
        parse_job(bad, "job.yaml")
    assert "pretrain.learning_rate: unknown key" in str(e.value)
    assert "job.yaml" in str(e.value)


def test_a_training_key_another_step_reads_is_named_with_its_readers():
    cases = {("pretrain", "aux3d_fraction"): "step pretrain does not read this key (only finetune, train-spin, train-second-round, train-estimator do)",
             ("estimator", "use_prior_reg"): "step train-estimator does not read this key (only finetune does)"}
    for (section, key), message in cases.items():
        with pytest.raises(ConfigError) as e:
            parse_job(dict(MINIMAL, **{section: {key: 0.5 if key == "aux3d_fraction" else False}}), "old.yaml")
        assert f"{section}.{key}: {message}" in str(e.value) and "old.yaml" in str(e.value)
    with pytest.raises(ConfigError, match=r"pretrain\.loss\.prior_reg: step pretrain does not read this key "
                                          r"\(only finetune does\)"):
        parse_job(dict(MINIMAL, pretrain={"loss": {"prior_reg": 2.0}}))
    parse_job(dict(MINIMAL, finetune={"aux3d_fraction": 0.25, "loss": {"prior_reg": 2.0}}))  # finetune reads both


def test_each_training_step_fingerprints_only_what_it_reads():
    from annotator.run import step_payloads

    base = step_payloads(parse_job(MINIMAL))
    changed = step_payloads(parse_job(dict(MINIMAL, finetune={"use_prior_reg": False, "loss": {"shape_l2": 0.5}})))
    assert changed["pretrain"] == base["pretrain"] and changed["train-estimator"] == base["train-estimator"]
    assert changed["finetune"] != base["finetune"]
    assert "aux3d_fraction" not in base["pretrain"]["train"] and "prior_reg" not in base["pretrain"]["train"]["loss"]
    assert "use_prior_reg" not in base["train-estimator"]["train"] and "aux3d_fraction" in base["train-estimator"]["train"]


def test_renamed_step_names_its_new_name(tmp_path, capsys):
    from annotator.run import main

    with pytest.raises(ConfigError, match="step 'train-prior' is now called 'train-pose-prior'"):
        parse_job(dict(MINIMAL, steps=["manifest", "train-prior", "pretrain"]))
    job = tmp_path / "job.yaml"
    job.write_text("name: t\ndatasets: []\n")
    with pytest.raises(SystemExit):
        main([str(job), "--force", "train-prior"])
    assert "step 'train-prior' is now called 'train-pose-prior'" in capsys.readouterr().err


def test_bad_value_is_named():
    with pytest.raises(ConfigError) as e:
        parse_job(dict(MINIMAL, finetune={"lr": -1}), "j")
    assert "finetune.lr" in str(e.value)


def test_smpl_kind_needs_path_and_synth_needs_block():
    with pytest.raises(ConfigError, match="body_model.path is required"):
        parse_job(dict(MINIMAL, body_model={"kind": "smpl"}))
    with pytest.raises(ConfigError, match=r"datasets\[s\].synth is required"):
        parse_job({"name": "t", "datasets": [{"name": "s", "format": "synth", "role": "aux3d"}]})


def test_duplicate_dataset_names_rejected():
    ds = MINIMAL["datasets"][0]
    with pytest.raises(ConfigError, match="duplicate dataset name"):
        parse_job(dict(MINIMAL, datasets=[ds, ds]))


def test_overrides_by_path_and_dataset_name(tmp_path):
    import yaml

    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump(MINIMAL))
    cfg = load_job(p, ["finetune.epochs=7", "storage.root=s3://bucket/x", "datasets.w.path=b.json", "crop.size=128"])
    assert cfg.finetune.epochs == 7 and cfg.crop.size == 128
    assert cfg.storage.root == "s3://bucket/x" and cfg.run_root == "s3://bucket/x/t"
    assert cfg.datasets[0].path.endswith("/b.json")
    with pytest.raises(ConfigError, match="ray.bogus: unknown key"):
        load_job(p, ["ray.bogus=1"])


def test_missing_and_malformed_job_files(tmp_path):
    with pytest.raises(ConfigError, match="job file not found"):
        load_job(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_job(bad)


@pytest.mark.parametrize("job", sorted((ROOT / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_jobs_validate(job):
    cfg = load_job(job)
    assert cfg.datasets_with_role("target"), "every shipped job annotates at least one target dataset"


def test_relative_local_paths_become_absolute_urls_stay(tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    job = dict(MINIMAL, storage={"root": "./runs"}, network={"weights": "s3://b/w.pth"})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    cfg = load_job("job.yaml")
    assert cfg.storage.root == str(tmp_path / "runs")
    assert cfg.datasets[0].path == str(tmp_path / "a.json")
    assert cfg.network.weights == "s3://b/w.pth"
