"""``kind: smpl``: a user's SMPL-format pkl, chumpy conversion and the shared code path.

No real SMPL file exists here, so the tests write a synthetic SMPL-format model: 6890
vertices scattered around a skeleton (the open model's rest joints), each rigidly skinned
to one joint, and a J_regressor averaging each joint's vertices (so it recovers the joint).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from annotator.body import load_body_model
from annotator.body.joints import SMPL_PARENTS
from annotator.body.model import SMPL_LANDMARK_VERTEX_IDS
from annotator.body.smpl_convert import ChumpyPickleError, convert_smpl, load_smpl_dict
from annotator.config import BodyModelConfig
from tests.test_body_model import assert_knee_flexion

N_VERTS = 6890
FAKE_CHUMPY = textwrap.dedent('''
    """Minimal stand-in for chumpy: pickles like chumpy.ch.Ch (value under 'x' in __dict__)."""
    import numpy as np

    class Ch(object):
        def __init__(self, x):
            self.x = np.asarray(x, np.float64)
            self._dirty_vars = set()
            self._itr = None

        def __getstate__(self):
            return dict(self.__dict__)

        def __setstate__(self, d):
            self.__dict__.update(d)
''')


@pytest.fixture(scope="module")
def smpl_arrays(body_model) -> dict:
    rng = np.random.default_rng(0)
    joints = body_model.rest_output().joints[0].numpy().astype(np.float64)
    owner = np.arange(N_VERTS) % 24
    offsets = rng.normal(scale=0.03, size=(N_VERTS, 3))
    for j in range(24):  # centre each joint's cloud on the joint -> the mean recovers it
        offsets[owner == j] -= offsets[owner == j].mean(0)
    j_reg = np.zeros((24, N_VERTS))
    j_reg[owner, np.arange(N_VERTS)] = 1.0
    j_reg /= j_reg.sum(1, keepdims=True)
    return {
        "v_template": joints[owner] + offsets,
        "shapedirs": rng.normal(scale=1e-3, size=(N_VERTS, 3, 10)),
        "posedirs": rng.normal(scale=1e-4, size=(N_VERTS, 3, 207)),
        "J_regressor": j_reg,
        "weights": np.eye(24)[owner],
        "kintree_table": np.array([[4294967295, *SMPL_PARENTS[1:]], list(range(24))], dtype=np.int64),
        "f": rng.integers(0, N_VERTS, size=(13776, 3)).astype(np.uint32),
        "bs_type": "lrotmin",
    }


@pytest.fixture(scope="module")
def plain_pkl(smpl_arrays, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps(smpl_arrays, protocol=2))
    return path


@pytest.fixture(scope="module")
def chumpy_pkl(smpl_arrays, tmp_path_factory) -> Path:
    """A pickle holding fake chumpy Ch objects and a sparse J_regressor, like the real files.

    Written in a subprocess so the fake ``chumpy`` never enters this interpreter."""
    root = tmp_path_factory.mktemp("chumpy")
    (root / "chumpy").mkdir()
    (root / "chumpy" / "__init__.py").write_text("from .ch import Ch\n")
    (root / "chumpy" / "ch.py").write_text(FAKE_CHUMPY)
    arrays = root / "arrays.npz"
    np.savez(arrays, **{k: v for k, v in smpl_arrays.items() if isinstance(v, np.ndarray)})
    out = root / "SMPL_NEUTRAL_chumpy.pkl"
    script = textwrap.dedent(f'''
        import pickle, sys, numpy as np, scipy.sparse
        sys.path.insert(0, {str(root)!r})
        from chumpy.ch import Ch
        a = dict(np.load({str(arrays)!r}))
        d = dict(a)
        for k in ("v_template", "shapedirs", "weights"):
            d[k] = Ch(a[k])
        d["J_regressor"] = scipy.sparse.csc_matrix(a["J_regressor"])
        d["bs_type"] = "lrotmin"
        open({str(out)!r}, "wb").write(pickle.dumps(d, protocol=2))
    ''')
    subprocess.run([sys.executable, "-c", script], check=True)
    assert "chumpy" not in sys.modules
    return out


def test_loads_and_keypoints(plain_pkl, smpl_arrays):
    m = load_body_model(BodyModelConfig(kind="smpl", path=str(plain_pkl)))
    assert m.model_id == "smpl:SMPL_NEUTRAL.pkl" and m.num_vertices == N_VERTS
    assert m.keypoint_names[24:] == list(SMPL_LANDMARK_VERTEX_IDS)  # no regressor points
    with torch.no_grad():
        out = m.rest_output()
    v = smpl_arrays["v_template"]
    ids = list(SMPL_LANDMARK_VERTEX_IDS.values())
    assert np.allclose(out.keypoints[0, 24:].numpy(), v[ids], atol=1e-5)  # picked by SMPL vertex ids
    assert np.allclose(out.joints[0].numpy(), smpl_arrays["J_regressor"] @ v, atol=1e-5)
    assert m.parents.tolist() == list(SMPL_PARENTS)


def test_knee_flexion_same_code_path(plain_pkl):
    m = load_body_model(BodyModelConfig(kind="smpl", path=str(plain_pkl)))
    assert_knee_flexion(m, torch.zeros(1, 10), vertex_atol=1e-3)  # random posedirs move all a little


def test_chumpy_file_gives_clear_error(chumpy_pkl):
    with pytest.raises(ChumpyPickleError, match=r"chumpy.*annotator body convert-smpl"):
        load_body_model(BodyModelConfig(kind="smpl", path=str(chumpy_pkl)))


def test_convert_round_trip_without_chumpy(chumpy_pkl, smpl_arrays, tmp_path):
    out = tmp_path / "converted.pkl"
    shapes = convert_smpl(str(chumpy_pkl), str(out))
    assert shapes["shapedirs"] == (N_VERTS, 3, 10) and shapes["J_regressor"] == (24, N_VERTS)
    data = load_smpl_dict(str(out))
    for key in ("v_template", "shapedirs", "weights", "J_regressor", "posedirs", "f"):
        assert isinstance(data[key], np.ndarray), key
        assert np.array_equal(data[key], smpl_arrays[key]), key
    assert data["bs_type"] == "lrotmin"
    m = load_body_model(BodyModelConfig(kind="smpl", path=str(out)))
    assert m.num_betas == 10 and len(m.checksum) == 64


def test_cli_convert(chumpy_pkl, tmp_path):
    from annotator.cli import main

    out = tmp_path / "cli.pkl"
    assert main(["body", "convert-smpl", str(chumpy_pkl), str(out)]) == 0
    assert load_smpl_dict(str(out))["v_template"].shape == (N_VERTS, 3)


def test_restricted_unpickler_refuses_code(tmp_path):
    evil = tmp_path / "evil.pkl"
    # a function reference is code, not data (os.getcwd pickles as posix.getcwd; builtins.print
    # would do too, but Ray replaces builtins.print when it is imported earlier in the session)
    evil.write_bytes(pickle.dumps({"v_template": os.getcwd}))
    with pytest.raises(ValueError, match=r"refusing to load posix\.getcwd"):
        load_smpl_dict(str(evil))


def test_bad_shapes_and_betas(smpl_arrays, tmp_path):
    bad = dict(smpl_arrays, weights=np.ones((N_VERTS, 23)))
    p = tmp_path / "bad.pkl"
    p.write_bytes(pickle.dumps(bad))
    with pytest.raises(ValueError, match=r"bad.pkl: key 'weights' has shape"):
        load_body_model(BodyModelConfig(kind="smpl", path=str(p)))
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps(smpl_arrays))
    with pytest.raises(ValueError, match="only 10 shape components"):
        load_body_model(BodyModelConfig(kind="smpl", path=str(good), num_betas=16))
    sixteen = tmp_path / "sixteen.pkl"  # smplx keeps 10 components of a model with fewer than 300
    sixteen.write_bytes(pickle.dumps(dict(smpl_arrays, shapedirs=np.concatenate(
        [smpl_arrays["shapedirs"], smpl_arrays["shapedirs"][..., :6]], axis=-1))))
    with pytest.raises(ValueError, match="smplx uses only 10 of this model's 16 shape components"):
        load_body_model(BodyModelConfig(kind="smpl", path=str(sixteen), num_betas=12))
    assert load_body_model(BodyModelConfig(kind="smpl", path=str(sixteen), num_betas=10)).num_betas == 10
    with pytest.raises(FileNotFoundError, match="missing.pkl does not exist"):
        load_body_model(BodyModelConfig(kind="smpl", path=str(tmp_path / "missing.pkl")))
