"""``overlay.run_body_model`` loads a run's body model the way the run recorded it
(``body_model/body_model.json``: kind, num_betas, checksum), from run directories built by
hand (no Ray)."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from annotator.body.smpl_convert import load_smpl_dict
from annotator.evaluation import overlay
from annotator.layout import RunLayout

NUM_BETAS = 16
"""More shape components than the open model's 10: only the record can ask for them."""
SHAPE_SPACE = 300
"""Components of the padded test model, like SMPL 1.1 (smplx caps any model with fewer
than 300 at 10 betas)."""


@pytest.fixture(scope="module")
def open_pkl():
    from annotator.body.open_model import ensure_open_model
    from annotator.config import BodyModelConfig

    return ensure_open_model(BodyModelConfig().cache_dir)


@pytest.fixture(scope="module")
def wide_pkl(tmp_path_factory, open_pkl) -> Path:
    """The open model with its shape space padded to SHAPE_SPACE components (the extra ones
    small, so the model still poses), as an SMPL-format pickle."""
    data = load_smpl_dict(open_pkl)
    shapedirs = np.asarray(data["shapedirs"])
    extra = np.random.default_rng(0).normal(0.0, 1e-3, shapedirs.shape[:2] + (SHAPE_SPACE - shapedirs.shape[2],))
    data["shapedirs"] = np.concatenate([shapedirs, extra.astype(shapedirs.dtype)], axis=2)
    path = tmp_path_factory.mktemp("model") / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def _run_dir(root: Path, model: Path, record: dict | None) -> str:
    """A run directory holding only its body model copy (and its record, if given)."""
    layout = RunLayout(str(root))
    Path(layout.body_model()).parent.mkdir(parents=True)
    shutil.copy(model, layout.body_model())
    if record is not None:
        Path(layout.body_model_record()).write_text(json.dumps(record))
    return str(root)


def test_run_body_model_follows_the_runs_record(tmp_path, wide_pkl):
    from annotator import storage

    checksum = storage.sha256_hex(wide_pkl.read_bytes())
    run = _run_dir(tmp_path / "job", wide_pkl, {"kind": "smpl", "num_betas": NUM_BETAS,
                                               "model_id": "smpl:SMPL_NEUTRAL.pkl", "checksum": checksum})
    body = overlay.run_body_model(run)
    assert body.num_betas == NUM_BETAS and body.checksum == checksum
    assert body.model_id.startswith("smpl:")  # the recorded kind, not always "open"


def test_run_body_model_without_record_is_the_open_model(tmp_path, open_pkl, body_model):
    body = overlay.run_body_model(_run_dir(tmp_path / "job", Path(open_pkl), None))
    assert body.num_betas == 10 and body.checksum == body_model.checksum and body.model_id == body_model.model_id


def test_run_body_model_checksum_mismatch_raises(tmp_path, wide_pkl):
    run = _run_dir(tmp_path / "job", wide_pkl, {"kind": "smpl", "num_betas": NUM_BETAS, "checksum": "0" * 64})
    with pytest.raises(ValueError, match="checksum.*differs"):
        overlay.run_body_model(run)


def test_run_body_model_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="body model is missing"):
        overlay.run_body_model(str(tmp_path / "job"))


def test_read_output_spells_paths_through_the_layout(tmp_path):
    with pytest.raises(ValueError, match="expected one of"):
        overlay.read_output(str(tmp_path), "toy", "nope")
    with pytest.raises(FileNotFoundError, match="prior/toy"):
        overlay.read_output(str(tmp_path), "toy", "prior")
