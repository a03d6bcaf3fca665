"""Cameras: full-image perspective projection and the CLIFF crop <-> full camera maps.

Conventions
-----------
* Camera frame: OpenCV (x right, y down, z forward), metres.
* Pixels: continuous coordinates with the origin at the top-left corner of the full
  image; pixel ``i`` covers ``[i, i + 1)`` so its centre is ``i + 0.5`` and the image
  centre of a ``w x h`` image is ``(w / 2, h / 2)`` (see :mod:`annotator.geometry.crop`).
* Full-image intrinsics (CLIFF): focal ``f`` in px, principal point at the image centre
  unless given; when the focal is unknown, :func:`default_focal`.
* Crop camera ``(s, tx, ty)`` (HMR/SPIN/CLIFF): weak perspective w.r.t. the square
  person box of side ``b`` px: a body point ``X`` lands at normalised crop coordinates
  ``s * (X_xy + (tx, ty))`` in ``[-1, 1]``, i.e. at ``centre + b/2 * s * (X_xy + t)``
  in full-image px; a 2 m long segment facing the camera spans ``b * s`` px.

CLIFF (Li et al., ECCV 2022) equations used here:

* Eq. 5, bbox information: ``[c_x / f, c_y / f, b / f]`` with ``(c_x, c_y)`` the box
  centre relative to the principal point.
* Eq. 7, crop camera -> full-image translation:
  ``t_x = tx + 2 c_x / (b s)``, ``t_y = ty + 2 c_y / (b s)``, ``t_z = 2 f / (b s)``
  (the weak-perspective scale ``b s / 2`` equals ``f / t_z``).
"""
from __future__ import annotations

import torch
from torch import Tensor

DEPTH_EPS = 1e-6
"""Smallest depth (metres) used in a perspective division. Points closer than this (or
behind the camera) are projected as if at this depth: finite, very far from the image,
so a reprojection loss on them is large instead of NaN/inf."""

SCALE_EPS = 1e-9
"""Lower bound on the crop-camera product ``b * s`` (px) before dividing by it, so a
degenerate scale (a network's first steps) gives a very distant but finite body
(CLIFF's reference code adds 1e-9 for the same reason)."""


def default_focal(width: Tensor | float, height: Tensor | float) -> Tensor:
    """CLIFF's focal for images without intrinsics: ``sqrt(w^2 + h^2)`` px.

    This gives a diagonal field of view of ``2 * atan(1/2)`` ~ 53 deg, typical of
    consumer cameras.
    """
    w, h = torch.as_tensor(width), torch.as_tensor(height)
    dtype = w.dtype if w.is_floating_point() else torch.get_default_dtype()
    w, h = w.to(dtype), h.to(dtype=dtype, device=w.device)
    return torch.sqrt(w * w + h * h)


def intrinsics(focal: Tensor, principal_point: Tensor) -> Tensor:
    """``K`` matrices ``(B, 3, 3)`` from ``focal`` ``(B,)`` or ``(B, 2)`` and ``(B, 2)`` principal points."""
    fxy = _focal_xy(focal)
    k = torch.zeros(fxy.shape[0], 3, 3, dtype=fxy.dtype, device=fxy.device)
    k[:, 0, 0], k[:, 1, 1] = fxy[:, 0], fxy[:, 1]
    k[:, :2, 2] = principal_point
    k[:, 2, 2] = 1.0
    return k


def perspective_projection(
    points: Tensor,
    focal: Tensor,
    principal_point: Tensor,
    translation: Tensor | None = None,
    rotation: Tensor | None = None,
) -> Tensor:
    """Project ``(B, N, 3)`` points to ``(B, N, 2)`` full-image px.

    ``x_cam = rotation @ x + translation`` (both optional), then
    ``u = f_x * x / z + p_x``, ``v = f_y * y / z + p_y`` with ``z`` clamped to
    :data:`DEPTH_EPS`. ``focal`` is ``(B,)`` (square pixels) or ``(B, 2)``.
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points: expected (B, N, 3), got {tuple(points.shape)}")
    x = points
    if rotation is not None:
        x = x @ rotation.transpose(-1, -2)
    if translation is not None:
        x = x + translation[:, None, :]
    z = x[..., 2:].clamp(min=DEPTH_EPS)
    fxy = _focal_xy(focal)
    return x[..., :2] / z * fxy[:, None, :] + principal_point[:, None, :]


def bbox_info(center: Tensor, box_size: Tensor, focal: Tensor, image_size: Tensor,
              principal_point: Tensor | None = None) -> Tensor:
    """CLIFF Eq. 5: ``(B, 3) = [c_x / f, c_y / f, b / f]``.

    ``center`` ``(B, 2)`` px and ``box_size`` ``(B,)`` px describe the square person box;
    ``(c_x, c_y) = center - principal_point`` (default: the image centre ``image_size / 2``,
    as in the paper), the same reference :func:`cam_crop_to_full` uses;
    ``image_size`` is ``(B, 2)`` as ``(w, h)``. No further normalisation is applied
    (the CLIFF reference code rescales these terms by empirical constants; here the
    network's first layer learns any scaling).
    """
    c = center - (image_size / 2.0 if principal_point is None else principal_point)
    f = focal[:, None]
    return torch.cat([c / f, box_size[:, None] / f], dim=-1)


def cam_crop_to_full(
    crop_cam: Tensor,
    center: Tensor,
    box_size: Tensor,
    image_size: Tensor,
    focal: Tensor,
    principal_point: Tensor | None = None,
) -> Tensor:
    """CLIFF Eq. 7: crop camera ``(B, 3) = (s, tx, ty)`` -> full-image translation ``(B, 3)``.

    ``t_z = 2 f / (b s)`` makes the perspective scale ``f / t_z`` at the body's depth
    equal to the crop camera's ``b s / 2`` px per metre; ``t_xy`` adds the box centre
    offset from the principal point, converted to metres at that depth. Exact for body
    points at depth ``t_z``; for others the usual weak-perspective error applies.
    """
    pp = image_size / 2.0 if principal_point is None else principal_point
    s, txy = crop_cam[:, 0], crop_cam[:, 1:3]
    bs = (box_size * s).clamp(min=SCALE_EPS)
    tz = 2.0 * focal / bs
    c = center - pp
    t_xy = txy + 2.0 * c / bs[:, None]
    return torch.cat([t_xy, tz[:, None]], dim=-1)


def cam_full_to_crop(
    translation: Tensor,
    center: Tensor,
    box_size: Tensor,
    image_size: Tensor,
    focal: Tensor,
    principal_point: Tensor | None = None,
) -> Tensor:
    """Inverse of :func:`cam_crop_to_full`: ``(B, 3)`` translation -> ``(s, tx, ty)``."""
    pp = image_size / 2.0 if principal_point is None else principal_point
    tz = translation[:, 2].clamp(min=DEPTH_EPS)
    s = 2.0 * focal / (box_size * tz)
    c = center - pp
    txy = translation[:, :2] - c * (tz / focal)[:, None]
    return torch.cat([s[:, None], txy], dim=-1)


def weak_perspective_to_translation(crop_cam: Tensor, crop_res: float | Tensor, focal_crop: float | Tensor) -> Tensor:
    """HMR Eq. 1 as a perspective camera of the crop: ``(s, tx, ty)`` -> ``(B, 3)`` translation.

    The equivalent crop intrinsics are ``focal_crop`` px and the principal point at the
    crop centre ``(crop_res / 2, crop_res / 2)`` (:func:`crop_intrinsics`); with
    ``t = (tx, ty, 2 f_crop / (crop_res s))`` the perspective projection matches the
    weak-perspective one for points at depth ``t_z``. This is the crop-frame camera of
    the HMR/SPIN reprojection loss (ablation of CLIFF's full-frame loss).
    """
    s = crop_cam[:, 0]
    res = torch.as_tensor(crop_res, dtype=crop_cam.dtype, device=crop_cam.device)
    fc = torch.as_tensor(focal_crop, dtype=crop_cam.dtype, device=crop_cam.device)
    tz = 2.0 * fc / (res * s).clamp(min=SCALE_EPS)
    return torch.cat([crop_cam[:, 1:3], tz[:, None]], dim=-1)


def crop_intrinsics(batch: int, crop_res: float, focal_crop: float, dtype=None, device=None) -> Tensor:
    """``(B, 3, 3)`` intrinsics of the crop camera used by :func:`weak_perspective_to_translation`."""
    focal = torch.full((batch,), float(focal_crop), dtype=dtype or torch.get_default_dtype(), device=device)
    pp = torch.full((batch, 2), float(crop_res) / 2.0, dtype=focal.dtype, device=device)
    return intrinsics(focal, pp)


def _focal_xy(focal: Tensor) -> Tensor:
    if focal.dim() == 1:
        return torch.stack([focal, focal], dim=-1)
    if focal.dim() == 2 and focal.shape[-1] == 2:
        return focal
    raise ValueError(f"focal: expected (B,) or (B, 2), got {tuple(focal.shape)}")
