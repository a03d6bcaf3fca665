"""Per-sample energy terms of SMPLify (Bogo et al. 2016, as used by SPIN): robustifier and priors.

Every function returns one value per sample ``(B,)`` (or keeps the residual shape for
:func:`gmof`) so a batched fit can sum over the batch without samples interacting.

SMPL axis-angle pose layout: ``body_pose`` is ``(B, 69)`` = 23 joints x 3 for SMPL
joints 1..23 (joint ``j`` at columns ``3 * (j - 1) .. 3 * (j - 1) + 2``); the model
frame is y up, x to the body's left, z forward (the way the body faces).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def gmof(residual: Tensor, sigma: float) -> Tensor:
    """Geman-McClure robustifier ``sigma^2 r^2 / (sigma^2 + r^2)``, element-wise.

    Quadratic (``~ r^2``) for ``|r| << sigma``, saturating at ``sigma^2`` for outliers
    (SMPLify / SPIN ``gmof``).
    """
    sq = residual * residual
    s2 = sigma * sigma
    return s2 * sq / (s2 + sq)


class BendJoint(NamedTuple):
    """One joint whose bending in the unnatural direction the angle prior penalises."""

    smpl_joint: int
    """Index in the 24 SMPL joints (1..23: rows of ``body_pose``)."""
    axis: int
    """Axis-angle component (0 = x, 1 = y, 2 = z) of the joint's bending."""
    sign: float
    """``+1`` if a positive rotation about ``axis`` is the unnatural (hyper-extending) direction."""


ANGLE_PRIOR_JOINTS: tuple[BendJoint, ...] = (
    # Elbows bend about the vertical (y) axis in the T-pose. The left forearm points to +x:
    # a positive y rotation swings it to -z (behind the body) = hyperextension.
    BendJoint(smpl_joint=18, axis=1, sign=1.0),   # left elbow
    # Right forearm points to -x: a positive y rotation swings it forward (natural flexion).
    BendJoint(smpl_joint=19, axis=1, sign=-1.0),  # right elbow
    # Knees bend about x: a positive x rotation swings the shin backwards (natural flexion).
    BendJoint(smpl_joint=4, axis=0, sign=-1.0),   # left knee
    BendJoint(smpl_joint=5, axis=0, sign=-1.0),   # right knee
)
"""SMPLify's angle-prior joints with SPIN's signs (``pose[:, [55, 58, 12, 15]]`` of the 72-D
pose, signs ``[1, -1, -1, -1]``); ``tests/test_fitting_priors.py`` checks each sign on the
body model by flexing and hyper-extending the joint."""

_ANGLE_COLUMNS = tuple(3 * (j.smpl_joint - 1) + j.axis for j in ANGLE_PRIOR_JOINTS)
_ANGLE_SIGNS = tuple(j.sign for j in ANGLE_PRIOR_JOINTS)


def angle_prior_terms(body_pose: Tensor) -> Tensor:
    """``(B, 4)`` per-joint SMPLify angle prior ``exp(sign * angle)^2`` (elbows, knees).

    ~0 for strong natural flexion (``exp(-2 * 1.5) = 0.05`` at 1.5 rad), 1 when straight,
    growing exponentially with hyperextension (``e^2 = 7.4`` at 1 rad).
    """
    _check_body_pose(body_pose)
    cols = torch.tensor(_ANGLE_COLUMNS, device=body_pose.device)
    signs = torch.tensor(_ANGLE_SIGNS, dtype=body_pose.dtype, device=body_pose.device)
    return torch.exp(body_pose.index_select(-1, cols) * signs).pow(2)


def angle_prior(body_pose: Tensor) -> Tensor:
    """``(B,)`` sum of :func:`angle_prior_terms` over the four joints."""
    return angle_prior_terms(body_pose).sum(dim=-1)


def shape_prior(betas: Tensor) -> Tensor:
    """``(B,)`` L2 on the shape coefficients (they are unit-variance PCA coefficients)."""
    return betas.pow(2).sum(dim=-1)


def pose_l2_prior(body_pose: Tensor) -> Tensor:
    """``(B,)`` L2 on the axis-angle body pose: the fallback pose prior when no VPoser is given
    (pulls towards the zero pose, a much weaker model of plausibility than a learned prior)."""
    _check_body_pose(body_pose)
    return body_pose.pow(2).sum(dim=-1)


def _check_body_pose(body_pose: Tensor) -> None:
    if body_pose.dim() != 2 or body_pose.shape[-1] != 69:
        raise ValueError(f"expected a (B, 69) SMPL axis-angle body pose, got {tuple(body_pose.shape)}")
