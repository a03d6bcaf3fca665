"""Rotation representations: axis-angle, 3x3 matrices and the continuous 6D form.

All functions are batched over arbitrary leading dimensions and differentiable.

Layouts
-------
* axis-angle (rotation vector): ``(..., 3)``, direction = axis, norm = angle in radians.
* matrix: ``(..., 3, 3)``, acting on column vectors (``x' = R @ x``).
* 6D (Zhou et al., CVPR 2019, "On the continuity of rotation representations"):
  ``(..., 6)`` holding the **first two columns** of the matrix, stored as the
  row-major flattening of the ``3x2`` block ``R[..., :, :2]``, i.e.
  ``[R00, R01, R10, R11, R20, R21]``. This is the layout of SPIN/CLIFF
  (``x.view(-1, 3, 2)``) and of the VPoser v2 decoder, so network heads trained with
  either code interpret the same numbers the same way. The way back is Gram-Schmidt:
  ``b1 = normalise(a1)``, ``b2 = normalise(a2 - (b1.a2) b1)``, ``b3 = b1 x b2``.

Axis-angle <-> matrix go through ``roma`` (quaternion based), which is numerically
safe at angle 0 and near pi (no division by ``sin(angle)``).
"""
from __future__ import annotations

import roma
import torch
from torch import Tensor

GRAM_SCHMIDT_EPS = 1e-8
"""Lower bound on vector norms in Gram-Schmidt so a degenerate 6D input (zero or
colinear columns) gives a finite result instead of NaN."""

GEODESIC_CLAMP = 1e-7
"""``acos`` argument is clamped to ``[-1 + eps, 1 - eps]`` so its gradient stays finite
at identical (or opposite) rotations."""


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """``(..., 3)`` rotation vectors -> ``(..., 3, 3)`` rotation matrices."""
    _check_last(axis_angle, (3,), "axis_angle")
    return roma.rotvec_to_rotmat(axis_angle)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """``(..., 3, 3)`` rotation matrices -> ``(..., 3)`` rotation vectors, angle in [0, pi]."""
    _check_last(matrix, (3, 3), "matrix")
    return roma.rotmat_to_rotvec(matrix)


def matrix_to_rot6d(matrix: Tensor) -> Tensor:
    """``(..., 3, 3)`` -> ``(..., 6)``: first two columns, row-major (see module doc)."""
    _check_last(matrix, (3, 3), "matrix")
    return matrix[..., :, :2].reshape(*matrix.shape[:-2], 6)


def rot6d_to_matrix(rot6d: Tensor) -> Tensor:
    """``(..., 6)`` -> ``(..., 3, 3)`` by Gram-Schmidt on the two stored columns."""
    _check_last(rot6d, (6,), "rot6d")
    return roma.special_gramschmidt(rot6d.reshape(*rot6d.shape[:-1], 3, 2), epsilon=GRAM_SCHMIDT_EPS)


def axis_angle_to_rot6d(axis_angle: Tensor) -> Tensor:
    """``(..., 3)`` -> ``(..., 6)``."""
    return matrix_to_rot6d(axis_angle_to_matrix(axis_angle))


def rot6d_to_axis_angle(rot6d: Tensor) -> Tensor:
    """``(..., 6)`` -> ``(..., 3)``."""
    return matrix_to_axis_angle(rot6d_to_matrix(rot6d))


def geodesic_distance(r1: Tensor, r2: Tensor) -> Tensor:
    """Angle in radians of ``r1^T r2`` for ``(..., 3, 3)`` matrices -> ``(...)``.

    Gradient-safe at zero distance (the ``acos`` argument is clamped, see
    :data:`GEODESIC_CLAMP`).
    """
    _check_last(r1, (3, 3), "r1")
    _check_last(r2, (3, 3), "r2")
    trace = (r1 * r2).sum(dim=(-2, -1))  # trace(r1^T r2)
    cos = ((trace - 1.0) * 0.5).clamp(-1.0 + GEODESIC_CLAMP, 1.0 - GEODESIC_CLAMP)
    return torch.acos(cos)


def _check_last(x: Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(x.shape[-len(shape):]) != shape or x.dim() < len(shape):
        raise ValueError(f"{name}: expected shape (..., {', '.join(map(str, shape))}), got {tuple(x.shape)}")
