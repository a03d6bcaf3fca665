"""Person crops (SPIN/CLIFF convention) as 2x3 affine maps between full image and crop.

Pixel convention (used by the whole product)
--------------------------------------------
Continuous pixel coordinates, origin at the top-left **corner** of the image: pixel
``i`` covers ``[i, i + 1)`` and its centre is at ``i + 0.5``. An image of width ``w``
spans ``[0, w]``; its centre is ``w / 2``; a horizontal flip maps ``x -> w - x``. This
is the convention of ``torch.nn.functional.affine_grid/grid_sample`` with
``align_corners=False`` (normalised -1/+1 are the outer pixel edges) and of PIL's
``Image.transform``, so a crop is a single sampling call.

Crop
----
A person box ``(x, y, w, h)`` (top-left corner and size, px) becomes a square box with
centre ``(x + w/2, y + h/2)`` and side ``b = bbox_scale * max(w, h)``
(:func:`bbox_to_center_size`). The crop of ``res`` px maps the square
``[c - b/2, c + b/2]^2`` of the full image onto ``[0, res]^2``:
``u_crop = (u_full - (c - b/2)) * res / b`` (:func:`crop_affine`); the inverse map
(:func:`invert_affine`) brings crop pixels (e.g. predicted keypoints) back to the full
image. Parts of the square outside the image are zero-padded by the sampler.
"""
from __future__ import annotations

import torch
from torch import Tensor


def bbox_to_center_size(bbox: Tensor, bbox_scale: float) -> tuple[Tensor, Tensor]:
    """``(B, 4)`` boxes ``(x, y, w, h)`` -> square box centre ``(B, 2)`` and side ``(B,)``."""
    if bbox.dim() != 2 or bbox.shape[-1] != 4:
        raise ValueError(f"bbox: expected (B, 4) as (x, y, w, h), got {tuple(bbox.shape)}")
    center = bbox[:, :2] + bbox[:, 2:] / 2.0
    size = bbox_scale * bbox[:, 2:].amax(dim=-1)
    return center, size


def crop_affine(center: Tensor, size: Tensor, res: float | Tensor) -> Tensor:
    """``(B, 2, 3)`` affine maps full-image px -> crop px for a crop of ``res`` px.

    ``center`` ``(B, 2)`` and ``size`` ``(B,)`` describe the square box in full-image px.
    """
    scale = torch.as_tensor(res, dtype=center.dtype, device=center.device) / size  # crop px per full px
    a = torch.zeros(center.shape[0], 2, 3, dtype=center.dtype, device=center.device)
    a[:, 0, 0] = scale
    a[:, 1, 1] = scale
    a[:, :, 2] = -(center - size[:, None] / 2.0) * scale[:, None]
    return a


def invert_affine(affine: Tensor) -> Tensor:
    """Inverse of ``(B, 2, 3)`` affine maps (``y = A x + t`` -> ``x = A^-1 y - A^-1 t``)."""
    lin_inv = torch.linalg.inv(affine[:, :, :2])
    return torch.cat([lin_inv, -(lin_inv @ affine[:, :, 2:])], dim=-1)


def apply_affine(points: Tensor, affine: Tensor) -> Tensor:
    """Apply ``(B, 2, 3)`` maps to ``(B, N, 2)`` points (extra trailing channels are not allowed)."""
    if points.shape[-1] != 2:
        raise ValueError(f"points: expected (B, N, 2), got {tuple(points.shape)}")
    return points @ affine[:, :, :2].transpose(-1, -2) + affine[:, None, :, 2]


def crop_grid(center: Tensor, size: Tensor, res: int, image_size: Tensor) -> Tensor:
    """Sampling grid ``(B, res, res, 2)`` for ``grid_sample(images, grid, align_corners=False)``.

    ``image_size`` ``(B, 2)`` as ``(w, h)`` of the full images. Crop pixel centres
    ``j + 0.5`` are mapped back to full-image px with the inverse crop affine and then
    normalised as ``2 u / w - 1`` (the ``align_corners=False`` convention, which matches
    the continuous pixel convention of this module).
    """
    inv = invert_affine(crop_affine(center, size, res))
    ticks = torch.arange(res, dtype=center.dtype, device=center.device) + 0.5
    gy, gx = torch.meshgrid(ticks, ticks, indexing="ij")
    pts = torch.stack([gx, gy], dim=-1).reshape(1, res * res, 2).expand(center.shape[0], -1, -1)
    full = apply_affine(pts, inv)
    norm = 2.0 * full / image_size[:, None, :].to(full.dtype) - 1.0
    return norm.reshape(center.shape[0], res, res, 2)
