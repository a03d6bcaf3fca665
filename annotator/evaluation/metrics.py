"""Evaluation metrics for 3D joints, meshes and 2D keypoints (batched torch).

Every metric returns per-sample values ``(B,)`` (or per-joint ``(B, J)`` where named
so); :func:`summarise` averages a dict of them. Inputs are ``(B, J, 3)`` / ``(B, J, 2)``
in any consistent unit: the output is in the same unit, except the 3DPCK/AUC
thresholds, which are in millimetres with ``mm_per_unit`` converting the inputs
(``1000`` for metres, ``1`` for millimetres).

Masks: optional ``(B, J)`` or ``(J,)`` boolean/0-1 tensors (visibility, confidence > 0,
joints present in the ground truth). Masked-out joints are ignored; a sample without
any valid joint gets NaN, which :func:`summarise` skips.

Root alignment: ``root`` is a joint index (e.g. 0 = pelvis for SMPL/H36M) or a list of
indices whose mean is the root (e.g. the two hips for COCO/MPII: mid-hip); see
:mod:`annotator.body.joints` for each convention's ``root``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

Root = int | Sequence[int] | None

PCK3D_THRESHOLD_MM = 150.0
"""3DPCK threshold (MPI-INF-3DHP / MuPoTS-3D protocol)."""

AUC_THRESHOLDS_MM = tuple(float(t) for t in range(0, 151, 5))
"""AUC over 3DPCK at 0, 5, ..., 150 mm (31 thresholds; MPI-INF-3DHP protocol)."""

MPII_HEAD_SIZE_FACTOR = 0.6
"""MPII PCKh reference length = 0.6 x the diagonal of the annotated head box
(the official MPII evaluation code, ``util_get_head_size``)."""

_EPS = 1e-12  # guards divisions by (masked) counts and variances; results stay NaN-free


def joint_errors(pred: Tensor, gt: Tensor) -> Tensor:
    """Per-joint Euclidean distance ``(B, J)``."""
    _check_pair(pred, gt)
    return (pred - gt).norm(dim=-1)


def root_align(joints: Tensor, root: Root) -> Tensor:
    """Subtract the root (a joint or the mean of several) from ``(B, J, D)`` joints."""
    if root is None:
        return joints
    idx = [root] if isinstance(root, int) else list(root)
    return joints - joints[:, idx].mean(dim=1, keepdim=True)


def mean_over_valid_joints(values: Tensor, mask: Tensor | None) -> Tensor:
    """Per-row mean over the last (joint) dim of ``(..., J)`` values, counting only the joints
    where ``mask`` is true (all if None); NaN for a row with no valid joint."""
    if mask is None:
        return values.mean(dim=-1)
    m = _expand_mask(mask, values)
    count = m.sum(dim=-1)
    total = (values * m).sum(dim=-1)
    return torch.where(count > 0, total / count.clamp(min=_EPS), torch.full_like(total, math.nan))


def mpjpe(pred: Tensor, gt: Tensor, root: Root = None, mask: Tensor | None = None) -> Tensor:
    """Mean per-joint position error ``(B,)`` after aligning both roots (``root=None``: none)."""
    return mean_over_valid_joints(joint_errors(root_align(pred, root), root_align(gt, root)), mask)


def similarity_align(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Best similarity transform (scale, rotation, translation) of ``pred`` onto ``gt``.

    Umeyama's closed form with a batched SVD, weighted by ``mask``; reflection-safe
    (the rotation has determinant +1 even when the best orthogonal map is a
    reflection). Returns the aligned ``(B, J, 3)`` prediction.
    """
    _check_pair(pred, gt)
    w = torch.ones(pred.shape[:2], dtype=pred.dtype, device=pred.device)
    if mask is not None:
        w = _expand_mask(mask, w)
    w = (w / w.sum(dim=1, keepdim=True).clamp(min=_EPS))[..., None]  # (B, J, 1), sums to 1
    mu_p, mu_g = (w * pred).sum(1, keepdim=True), (w * gt).sum(1, keepdim=True)
    x, y = pred - mu_p, gt - mu_g
    var_x = (w * x * x).sum(dim=(1, 2))
    cov = (w * y).transpose(1, 2) @ x  # (B, 3, 3) = sum_j w_j y_j x_j^T
    u, sing, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    s_diag = torch.ones_like(sing)
    s_diag[:, -1] = d
    rot = u @ torch.diag_embed(s_diag) @ vh
    scale = (sing * s_diag).sum(dim=-1) / var_x.clamp(min=_EPS)
    return scale[:, None, None] * x @ rot.transpose(1, 2) + mu_g


def pa_mpjpe(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Procrustes-aligned MPJPE ``(B,)`` (similarity transform fitted on the valid joints)."""
    return mean_over_valid_joints(joint_errors(similarity_align(pred, gt, mask), gt), mask)


def pve(pred_verts: Tensor, gt_verts: Tensor, pred_root: Tensor | None = None, gt_root: Tensor | None = None) -> Tensor:
    """Per-vertex error ``(B,)``; with ``(B, 3)`` roots (e.g. pelvis joints) both meshes are
    translated so their roots coincide first."""
    if (pred_root is None) != (gt_root is None):
        raise ValueError("pve: give both pred_root and gt_root, or neither")
    if pred_root is not None:
        pred_verts = pred_verts - pred_root[:, None]
        gt_verts = gt_verts - gt_root[:, None]
    return joint_errors(pred_verts, gt_verts).mean(dim=-1)


def per_axis_errors(pred: Tensor, gt: Tensor, root: Root = None, mask: Tensor | None = None) -> dict[str, Tensor]:
    """Mean absolute error per camera axis ``{"x", "y", "z"} -> (B,)`` after root alignment."""
    diff = (root_align(pred, root) - root_align(gt, root)).abs()
    return {axis: mean_over_valid_joints(diff[..., i], mask) for i, axis in enumerate("xyz")}


def orientation_error_deg(pred_axis_angle: Tensor, gt_axis_angle: Tensor) -> Tensor:
    """Geodesic angle in degrees between predicted and true global orientations ``(B, 3)``
    axis-angle -> ``(B,)``."""
    from annotator.geometry.rotations import axis_angle_to_matrix, geodesic_distance

    return torch.rad2deg(geodesic_distance(axis_angle_to_matrix(pred_axis_angle.float()),
                                           axis_angle_to_matrix(gt_axis_angle.float())))


def keypoint_error_2d(pred: Tensor, gt: Tensor, mask: Tensor | None = None, norm: Tensor | None = None) -> Tensor:
    """Mean 2D keypoint distance ``(B,)`` in px over valid joints; divided by ``norm``
    ``(B,)`` (e.g. the person box size) when given."""
    err = mean_over_valid_joints(joint_errors(pred, gt), mask)
    return err if norm is None else err / norm


def pck_2d(pred: Tensor, gt: Tensor, ref_size: Tensor, alpha: float, mask: Tensor | None = None) -> Tensor:
    """PCK@alpha ``(B,)``: share of valid joints within ``alpha * ref_size`` px.

    ``ref_size`` ``(B,)`` is the box size (PCK) or the head size (PCKh, see
    :func:`mpii_head_size`).
    """
    hit = (joint_errors(pred, gt) <= alpha * ref_size[:, None]).to(pred.dtype)
    return mean_over_valid_joints(hit, mask)


def mpii_head_size(head_boxes: Tensor) -> Tensor:
    """MPII PCKh reference length ``(B,)`` from ``(B, 4)`` head boxes ``(x1, y1, x2, y2)``."""
    return MPII_HEAD_SIZE_FACTOR * (head_boxes[:, 2:] - head_boxes[:, :2]).norm(dim=-1)


def pck_3d(
    pred: Tensor,
    gt: Tensor,
    threshold_mm: float = PCK3D_THRESHOLD_MM,
    mask: Tensor | None = None,
    root: Root = None,
    mm_per_unit: float = 1.0,
) -> Tensor:
    """3DPCK ``(B,)``: share of valid joints within ``threshold_mm`` after root alignment."""
    err_mm = joint_errors(root_align(pred, root), root_align(gt, root)) * mm_per_unit
    return mean_over_valid_joints((err_mm <= threshold_mm).to(pred.dtype), mask)


def auc_3d(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    root: Root = None,
    mm_per_unit: float = 1.0,
    thresholds_mm: Sequence[float] = AUC_THRESHOLDS_MM,
) -> Tensor:
    """Area under the 3DPCK curve ``(B,)``: mean 3DPCK over ``thresholds_mm``."""
    err_mm = joint_errors(root_align(pred, root), root_align(gt, root)) * mm_per_unit
    th = torch.as_tensor(thresholds_mm, dtype=pred.dtype, device=pred.device)
    hits = (err_mm[..., None] <= th).to(pred.dtype)  # (B, J, T)
    joint_mask = None if mask is None else _expand_mask(mask, err_mm)[:, None, :]
    per_threshold = mean_over_valid_joints(hits.transpose(1, 2), joint_mask)
    return per_threshold.mean(dim=-1)  # (B, T) -> (B,)


def summarise(per_sample: Mapping[str, Tensor]) -> dict[str, float]:
    """Means of per-sample metrics, skipping NaN (samples without valid joints)."""
    out = {}
    for name, values in per_sample.items():
        v = torch.as_tensor(values).detach().double().flatten()
        out[name] = float(torch.nanmean(v)) if v.numel() else math.nan
    return out


def _check_pair(pred: Tensor, gt: Tensor) -> None:
    if pred.shape != gt.shape or pred.dim() != 3:
        raise ValueError(f"expected pred and gt of the same (B, J, D) shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")


def _expand_mask(mask: Tensor, like: Tensor) -> Tensor:
    m = mask.to(dtype=like.dtype, device=like.device)
    if m.dim() == 1:
        m = m[None].expand_as(like)
    elif m.dim() == like.dim() and all(a in (b, 1) for a, b in zip(m.shape, like.shape)):
        m = m.expand_as(like)  # broadcastable (e.g. (B, 1, J) over thresholds)
    if m.shape != like.shape:
        raise ValueError(f"mask: expected shape {tuple(like.shape)} or ({like.shape[-1]},), got {tuple(mask.shape)}")
    return m
