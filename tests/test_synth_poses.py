"""Pose sampler: joint limits, determinism, mirroring, and the meaning of the angles on the model."""
from __future__ import annotations

import numpy as np
import torch

from annotator.data.synth import poses
from annotator.data.synth.poses import (ARCHETYPES, BODY_JOINT_NAMES, LAB_ARCHETYPES, axis_angle_to_euler,
                                        check_limits, euler_to_axis_angle, joint_limits, mirror_left_terms,
                                        sample_poses)


def _euler_pose(**joints) -> np.ndarray:
    """(1, 69) body_pose from actual Euler angles (degrees, x/y/z) of named joints."""
    eul = np.zeros((1, len(BODY_JOINT_NAMES), 3))
    for name, xyz in joints.items():
        eul[0, BODY_JOINT_NAMES.index(name)] = xyz
    return euler_to_axis_angle(eul)


def test_sampled_poses_respect_limits_and_cover_archetypes():
    sample = sample_poses(np.random.default_rng(3), 600)
    ok = check_limits(sample.body_pose)
    assert ok.shape == (600, 23) and ok.all()
    assert set(sample.archetype) == set(ARCHETYPES)  # every activity drawn
    assert {"upright", "lying_back", "lying_side", "lying_front"} <= set(sample.posture)
    lab = sample_poses(np.random.default_rng(3), 200, LAB_ARCHETYPES, poses.LAB_SPREAD)
    assert set(lab.archetype) <= set(LAB_ARCHETYPES) and check_limits(lab.body_pose).all()
    # lab poses scatter less around their archetypes than wild ones
    assert np.abs(lab.body_pose).mean() < np.abs(sample.body_pose).mean()


def test_limits_reject_impossible_joints():
    lim = joint_limits()
    assert lim["left_knee"].lo[0] == 0 and lim["left_elbow"].order == "YZX"
    hyper_knee = _euler_pose(left_knee=(-30, 0, 0))  # knee bent forward
    assert not check_limits(hyper_knee)[0, BODY_JOINT_NAMES.index("left_knee")]
    # right elbow flexes with +y (mirror of the left's -y): +90 fine, -90 impossible
    assert check_limits(_euler_pose(right_elbow=(0, 90, 0)))[0].all()
    assert not check_limits(_euler_pose(right_elbow=(0, -90, 0)))[0, BODY_JOINT_NAMES.index("right_elbow")]


def test_determinism_round_trip_and_mirror():
    a = sample_poses(np.random.default_rng(11), 50)
    b = sample_poses(np.random.default_rng(11), 50)
    c = sample_poses(np.random.default_rng(12), 50)
    assert np.array_equal(a.body_pose, b.body_pose) and a.archetype == b.archetype
    assert not np.array_equal(a.body_pose, c.body_pose)
    eul = axis_angle_to_euler(a.body_pose)
    assert np.allclose(euler_to_axis_angle(poses._to_actual(eul)), a.body_pose, atol=1e-9)
    assert np.allclose(mirror_left_terms(mirror_left_terms(eul)), eul)


def test_angle_conventions_on_the_body_model(body_model):
    """The table's meanings hold on the real model: flexions go the anatomical way."""
    names = body_model.keypoint_names
    j = {n: names.index(n) for n in ("left_hip", "left_knee", "left_ankle", "left_shoulder", "left_elbow",
                                      "left_wrist", "right_elbow", "right_wrist", "head", "nose")}
    cases = {
        "knee": _euler_pose(left_knee=(90, 0, 0)),
        "hip": _euler_pose(left_hip=(-90, 0, 0)),
        "arm_down": _euler_pose(left_shoulder=(0, 0, -70)),
        "elbows": _euler_pose(left_elbow=(0, -90, 0), right_elbow=(0, 90, 0)),
        "nod": _euler_pose(head=(40, 0, 0)),
    }
    pose = torch.tensor(np.concatenate(list(cases.values())), dtype=torch.float32)
    zeros = torch.zeros(len(pose), 3)
    kp = body_model(zeros, pose, torch.zeros(len(pose), 10), zeros).keypoints.numpy()
    knee, hip, down, elbows, nod = kp
    # body frame: y up, z forward, x = subject's left
    assert knee[j["left_ankle"], 2] < knee[j["left_knee"], 2] - 0.3  # shin swings backward
    assert hip[j["left_knee"], 2] > hip[j["left_hip"], 2] + 0.3  # thigh swings forward
    assert down[j["left_wrist"], 1] < down[j["left_shoulder"], 1] - 0.4  # arm lowered
    for side in ("left", "right"):  # forearms point forward
        assert elbows[j[f"{side}_wrist"], 2] > elbows[j[f"{side}_elbow"], 2] + 0.2
    rest = body_model.rest_output().keypoints[0].numpy()
    assert nod[j["nose"], 1] < rest[j["nose"], 1] - 0.03  # nodding lowers the nose
