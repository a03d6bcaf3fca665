"""The open (anny-built) body model: geometry, skinning, regressors, determinism."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from annotator.body import LANDMARK_NAMES, SMPL_JOINT_NAMES
from annotator.body.joints import SMPL_PARENTS
from annotator.body.smpl_convert import load_smpl_dict

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


def _rest(model, betas=None):
    with torch.no_grad():
        return model.rest_output(betas)


def test_contract(body_model):
    m = body_model
    assert m.model_id == "open-anny-0.6.2-v1"
    assert len(m.checksum) == 64
    assert m.faces.dtype == torch.long and m.faces.shape[1] == 3
    assert m.parents.tolist() == list(SMPL_PARENTS)
    coco = [n for n in m.keypoint_names if n.startswith("coco_")]
    assert m.keypoint_names[:36] == [*SMPL_JOINT_NAMES, *LANDMARK_NAMES]
    assert len(coco) == 23 and "coco_left_heel" in coco and "coco_nose" in coco
    out = _rest(m)
    assert out.vertices.shape == (1, m.num_vertices, 3)
    assert out.joints.shape == (1, 24, 3) and out.keypoints.shape == (1, len(m.keypoint_names), 3)


def test_t_pose_symmetric_and_upright(body_model):
    j = _rest(body_model).joints[0].numpy()
    for name in SMPL_JOINT_NAMES:
        if name.startswith("left_"):
            a, b = j[J[name]], j[J[name.replace("left_", "right_")]]
            assert a[0] > 0.015 and abs(a[0] + b[0]) < 2e-3 and np.allclose(a[1:], b[1:], atol=2e-3), name
    assert np.allclose(j[J["pelvis"]], 0.0, atol=0.02)  # pelvis-centred template
    assert j[J["head"], 1] > j[J["neck"], 1] > j[J["spine3"], 1] > j[J["pelvis"], 1] > j[J["left_knee"], 1]
    # T-pose: wrists level with the shoulders and far out along x
    assert abs(j[J["left_wrist"], 1] - j[J["left_shoulder"], 1]) < 0.03
    assert j[J["left_wrist"], 0] > 0.6


def test_height_and_beta0(body_model):
    betas = torch.zeros(3, body_model.num_betas)
    betas[1, 0], betas[2, 0] = -2.0, 2.0
    v = _rest(body_model, betas).vertices
    h = (v[..., 1].amax(1) - v[..., 1].amin(1)).tolist()
    assert 1.6 < h[0] < 1.8
    assert h[2] > h[0] + 0.1 > h[1] + 0.2  # +2 taller than 0 taller than -2


def test_regressor_and_weight_rows(body_model):
    s = body_model.smpl
    assert torch.allclose(s.J_regressor.sum(1), torch.ones(24), atol=1e-5)
    assert (s.J_regressor >= 0).all()
    assert (s.J_regressor > 0).sum(1).max() <= 200  # local/sparse rows
    assert torch.allclose(s.lbs_weights.sum(1), torch.ones(body_model.num_vertices), atol=1e-5)
    assert torch.allclose(body_model.keypoint_regressor.sum(1), torch.ones(23), atol=1e-5)
    assert float(s.posedirs.abs().max()) == 0.0


def test_landmarks_sensible(body_model):
    kp = _rest(body_model).keypoints[0].numpy()
    idx = {n: i for i, n in enumerate(body_model.keypoint_names)}
    nose, head = kp[idx["nose"]], kp[idx["head"]]
    assert nose[1] > kp[idx["left_shoulder"], 1] + 0.15
    assert nose[2] > head[2] + 0.05  # in front of the head centre (SMPL faces +z)
    assert kp[idx["head_top"], 1] == pytest.approx(kp[:, 1].max(), abs=0.01)
    assert kp[idx["left_eye"], 0] > 0 > kp[idx["right_eye"], 0]
    assert kp[idx["left_big_toe"], 2] > kp[idx["left_ankle"], 2] > kp[idx["left_heel"], 2]
    # the vertex landmarks agree with anny's COCO regressor to within a few cm
    for n in ("nose", "left_eye", "left_ear", "left_big_toe", "right_heel"):
        assert np.linalg.norm(kp[idx[n]] - kp[idx["coco_" + n]]) < 0.03, n


def _knee_flexion(model, betas):
    pose = torch.zeros(2, 69)
    pose[1, (J["left_knee"] - 1) * 3] = math.pi / 2
    with torch.no_grad():
        return model(torch.zeros(2, 3), pose, betas.expand(2, -1))


def assert_knee_flexion(model, betas, vertex_atol=1e-5):
    """90 deg left-knee flexion: joints above the knee and thigh vertices stay (up to
    ``vertex_atol``, for pose correctives), the shin turns by exactly 90 deg about +x."""
    out = _knee_flexion(model, betas)
    j = out.joints
    for name in ("left_hip", "left_knee", "pelvis", "right_ankle"):
        assert torch.allclose(j[0, J[name]], j[1, J[name]], atol=1e-5), name
    shin = j[0, J["left_ankle"]] - j[0, J["left_knee"]]
    moved = j[1, J["left_ankle"]] - j[1, J["left_knee"]]
    rot_x90 = torch.tensor([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # 90 deg about +x
    assert torch.allclose(moved, rot_x90 @ shin, atol=1e-5)
    assert moved[2] < -0.2 * shin.norm()  # the shin swings backwards (-z)
    w = model.smpl.lbs_weights
    below_knee = w[:, [J["left_knee"], J["left_ankle"], J["left_foot"]]].sum(1)
    thigh = (w[:, J["left_hip"]] > 0.5) & (below_knee == 0)
    shin = w[:, J["left_knee"]] > 0.9
    assert thigh.sum() > 100 and shin.sum() > 50
    assert torch.allclose(out.vertices[0, thigh], out.vertices[1, thigh], atol=vertex_atol)
    assert (out.vertices[0, shin] - out.vertices[1, shin]).norm(dim=1).mean() > 0.02


def test_knee_flexion_moves_only_the_shin(body_model):
    assert_knee_flexion(body_model, torch.zeros(1, body_model.num_betas))


def test_rotation_matrix_input_matches_axis_angle(body_model):
    import roma

    g = torch.Generator().manual_seed(1)
    go, bp = 0.3 * torch.randn(2, 3, generator=g), 0.3 * torch.randn(2, 69, generator=g)
    betas = torch.randn(2, body_model.num_betas, generator=g)
    with torch.no_grad():
        a = body_model(go, bp, betas)
        b = body_model(roma.rotvec_to_rotmat(go)[:, None], roma.rotvec_to_rotmat(bp.view(2, 23, 3)), betas,
                       pose2rot=False)
    assert torch.allclose(a.keypoints, b.keypoints, atol=1e-5)


def test_cached_file_is_plain_smpl_pickle(body_model):
    import smplx

    from annotator.body.open_model import open_model_paths
    from annotator.config import BodyModelConfig

    pkl, _ = open_model_paths(BodyModelConfig().cache_dir)
    assert hashlib.sha256(open(pkl, "rb").read()).hexdigest() == body_model.checksum
    data = load_smpl_dict(pkl)
    assert data["build_info"]["bone_to_smpl_joint"]["lowerleg02.L"] == "left_knee"
    s = smplx.SMPL(model_path=pkl)  # the standard smplx reader
    assert s.v_template.shape == (body_model.num_vertices, 3)


def test_reduced_build_is_deterministic():
    from annotator.body.open_model import build_open_model

    blob_a, sa = build_open_model(num_samples=24, seed=3)
    blob_b, sb = build_open_model(num_samples=24, seed=3)
    assert hashlib.sha256(blob_a).hexdigest() == hashlib.sha256(blob_b).hexdigest() == sa["checksum"]
    blob_c, _ = build_open_model(num_samples=24, seed=4)
    assert blob_c != blob_a
    assert sa["heldout_samples"] == 5 and sa["jreg_heldout_error_mm"]["mean"] < 15.0
