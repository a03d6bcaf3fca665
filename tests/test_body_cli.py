"""``annotator body`` commands, the body previews (:mod:`annotator.render.preview`), and loading a model from S3."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from annotator import storage
from annotator.body import load_body_model
from annotator.cli import main
from annotator.config import BodyModelConfig
from annotator.render.preview import ALBEDO, render_view
from annotator.render.shade import DEFAULT_LIGHT


def test_info_prints_summary(capsys):
    assert main(["body", "info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "open" and info["vertices"] == 13718 and info["joints"] == 24
    h = info["height_m"]
    assert h["beta0=-2"] < h["beta0=0"] < h["beta0=+2"] and 1.6 < h["beta0=0"] < 1.8
    assert 0 < info["jreg_heldout_error_mm"]["mean"] < 10.0


def test_render_png(tmp_path, capsys):
    out = tmp_path / "body.png"
    assert main(["body", "render", "--out", str(out), "--tile", "160"]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (320, 320, 3)
    body = (img != 255).any(-1)
    rest_front = body[:160, :160]
    cols = np.flatnonzero(rest_front.any(0))
    rows = np.flatnonzero(rest_front.any(1))
    assert cols.max() - cols.min() > rows.max() - rows.min() - 10  # T-pose: arm span ~ height
    assert abs((cols.min() + cols.max()) / 2 - 80) < 4  # symmetric about the centre
    assert body[160:, :].sum() > 0.05 * body[160:].size


def _expected_colour(normal):
    """Two-sided Lambert with the default light, written out: the normal turned towards the
    viewer (-z), lit by ``ambient + (1 - ambient) * max(0, n . l)``."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    n = -n if n[2] > 0 else n
    light = np.asarray(DEFAULT_LIGHT.direction)
    shade = DEFAULT_LIGHT.ambient + (1 - DEFAULT_LIGHT.ambient) * max(0.0, float(n @ light))
    return np.asarray(ALBEDO) * shade * 255


@pytest.mark.parametrize("tilted_z", [1.0, 3.0])
def test_rasterize_coverage_depth_and_shading(tilted_z):
    # a 2x2 m square facing the viewer at z = 2, and a smaller square tilted 45 deg about y
    # either in front of it (z ~ 1) or behind it (z ~ 3): the nearer surface must win.
    square = np.array([[-1, -1, 2], [1, -1, 2], [1, 1, 2], [-1, 1, 2]], float)
    tilted = np.array([[0, -0.5, 0], [1, -0.5, 1], [1, 0.5, 1], [0, 0.5, 0]], float) * [1, 1, 0.2] + [0, 0, tilted_z]
    verts = np.concatenate([square, tilted])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    img = render_view(verts, faces, (40, 40), 10.0, np.zeros(2))  # 10 px/m, square -> px [10, 30)
    covered = (img != 255).any(-1)
    assert covered[10:30, 10:30].all() and covered.sum() == 400
    far, near = _expected_colour([0, 0, 1]), _expected_colour([-0.2, 0, 1])
    assert np.abs(img[20, 13] - far).max() <= 0.5 + 1e-3
    assert np.abs(img[20, 25] - (near if tilted_z < 2 else far)).max() <= 0.5 + 1e-3


def test_the_body_forward_bench_is_only_under_annotator_bench(capsys):
    with pytest.raises(SystemExit):  # argparse: invalid choice
        main(["body", "bench"])
    assert "invalid choice" in capsys.readouterr().err


def test_load_from_s3(s3_bucket, body_model):
    from annotator.body.open_model import open_model_paths

    pkl, _ = open_model_paths(BodyModelConfig().cache_dir)
    url = s3_bucket + "/models/SMPL_NEUTRAL.pkl"
    storage.write_bytes_atomic(url, open(pkl, "rb").read())
    m = load_body_model(BodyModelConfig(kind="open", path=url))
    assert m.checksum == body_model.checksum
    with torch.no_grad():
        assert torch.allclose(m.rest_output().keypoints, body_model.rest_output().keypoints)
