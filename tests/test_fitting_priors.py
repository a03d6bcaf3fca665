"""SMPLify energy terms: Geman-McClure, the elbow/knee angle prior (signs checked on the body model)."""
from __future__ import annotations

import math

import pytest
import torch

from annotator.body.joints import SMPL_JOINT_NAMES
from annotator.fitting.priors import (
    ANGLE_PRIOR_JOINTS,
    angle_prior,
    angle_prior_terms,
    gmof,
    pose_l2_prior,
    shape_prior,
)

FLEX_RAD = 1.2
"""A clear natural flexion (~70 deg)."""
HYPER_RAD = 0.5
"""A clear hyperextension (~30 deg) of an elbow or knee."""

# child joint whose displacement shows the bending direction, and whether natural flexion
# moves it to the front (+1, elbows: the forearm comes forward) or to the back (-1, knees)
CHILD_AND_FRONT = {18: ("left_wrist", 1.0), 19: ("right_wrist", 1.0), 4: ("left_ankle", -1.0), 5: ("right_ankle", -1.0)}


def test_gmof_is_quadratic_near_zero_and_saturates():
    r = torch.tensor([0.0, 1.0, 10.0, 1e4])
    out = gmof(r, sigma=100.0)
    assert out[0] == 0
    assert out[1] == pytest.approx(1.0, rel=1e-3)  # ~ r^2 for r << sigma
    assert out[2] == pytest.approx(100.0 * 1e4 / (1e4 + 100.0), rel=1e-6)
    assert out[3] == pytest.approx(1e4, rel=1e-3)  # -> sigma^2 for outliers
    assert torch.equal(gmof(-r, 100.0), out)


def _bent(joint: int, axis: int, angle: float) -> torch.Tensor:
    pose = torch.zeros(1, 69)
    pose[0, 3 * (joint - 1) + axis] = angle
    return pose


@pytest.mark.parametrize("bend", ANGLE_PRIOR_JOINTS, ids=lambda j: SMPL_JOINT_NAMES[j.smpl_joint])
def test_angle_prior_sign_matches_body_model_anatomy(body_model, bend):
    """Flex each elbow/knee both ways on the body model; the prior is ~0 for the anatomical flexion
    (forearm forward, shin backward) and large for the opposite (hyperextension)."""
    names = body_model.keypoint_names
    child_name, front = CHILD_AND_FRONT[bend.smpl_joint]
    child, nose, pelvis = names.index(child_name), names.index("nose"), names.index("pelvis")
    zeros = torch.zeros(1, 3)
    rest = body_model(zeros, torch.zeros(1, 69), torch.zeros(1, 10)).keypoints
    facing = torch.sign(rest[0, nose, 2] - rest[0, pelvis, 2])  # the model faces +z or -z
    assert facing == 1.0  # SMPL convention: the body faces +z

    results = {}
    for direction in (1.0, -1.0):
        pose = _bent(bend.smpl_joint, bend.axis, direction * FLEX_RAD)
        kps = body_model(zeros, pose, torch.zeros(1, 10)).keypoints
        forward_move = float((kps[0, child, 2] - rest[0, child, 2]) * facing)
        assert abs(forward_move) > 0.1  # the limb really swings front/back (> 10 cm)
        natural = math.copysign(1.0, forward_move) == front
        results[natural] = direction
    natural_dir = results[True]
    assert natural_dir == -bend.sign  # the table's sign penalises the other direction

    k = ANGLE_PRIOR_JOINTS.index(bend)
    flexed = angle_prior_terms(_bent(bend.smpl_joint, bend.axis, natural_dir * FLEX_RAD))[0]
    hyper = angle_prior_terms(_bent(bend.smpl_joint, bend.axis, -natural_dir * HYPER_RAD))[0]
    assert flexed[k] == pytest.approx(math.exp(-2 * FLEX_RAD), rel=1e-5)  # 0.09
    assert flexed[k] < 0.1
    assert hyper[k] == pytest.approx(math.exp(2 * HYPER_RAD), rel=1e-5)  # 2.7
    assert hyper[k] > 25 * flexed[k]
    others = [i for i in range(len(ANGLE_PRIOR_JOINTS)) if i != k]
    assert torch.allclose(flexed[others], torch.ones(3))  # straight joints: exp(0)^2


def test_angle_prior_ignores_other_joints_and_rotation_axes():
    pose = torch.zeros(2, 69)
    pose[1] = 0.7  # every component bent by 0.7 rad, including the prior's own columns
    out = angle_prior(pose)
    assert out[0] == pytest.approx(4.0)
    expected = sum(math.exp(2 * 0.7 * j.sign) for j in ANGLE_PRIOR_JOINTS)
    assert out[1] == pytest.approx(expected, rel=1e-5)
    pose2 = pose.clone()
    pose2[1, 0:3] = -2.0  # left hip: not in the prior
    assert angle_prior(pose2)[1] == out[1]


def test_l2_priors_per_sample():
    assert torch.equal(shape_prior(torch.tensor([[1.0, 2.0], [0.0, 0.0]])), torch.tensor([5.0, 0.0]))
    pose = torch.zeros(3, 69)
    pose[2, 5] = 2.0
    assert torch.equal(pose_l2_prior(pose), torch.tensor([0.0, 0.0, 4.0]))
    with pytest.raises(ValueError, match=r"\(B, 69\)"):
        pose_l2_prior(torch.zeros(2, 63))
