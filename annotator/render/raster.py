"""A vectorised CPU z-buffer rasteriser (no OpenGL); shading is :mod:`annotator.render.shade`.

Conventions
-----------
* Input vertices are ``(V, 3)`` screen points ``(u, v, z)``: ``u, v`` in full-image px
  (pixel ``i`` covers ``[i, i + 1)``, centre ``i + 0.5``, as in
  :mod:`annotator.geometry.cameras`) and ``z`` the camera-frame depth in metres.
* A pixel is covered by a triangle when its centre lies inside it (edge functions, no
  anti-aliasing). Depth is interpolated perspective-correctly (``1/z`` is affine in
  screen space).

Algorithm (all steps are whole-array torch operations, no per-triangle loop)
---------------------------------------------------------------------------
1. per triangle: the integer range of pixel centres inside its screen bounding box;
2. ragged expansion of every (triangle, candidate pixel) pair with
   ``repeat_interleave`` (bounding-box-tiled evaluation: the work is the sum of the
   bounding-box areas, mostly 0-4 px per triangle for a body mesh at 256-640 px);
3. barycentric coordinates from per-triangle affine edge-function coefficients,
   inside test, perspective-correct depth;
4. z-test as one ``scatter_reduce(amin)`` over a packed int64 key
   ``(float32 depth bits << 32) | triangle index``: positive IEEE-754 floats order like
   their bit patterns, so the minimum key is the nearest triangle, ties broken by the
   lower triangle index - deterministic, unlike a scatter of floats.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

NEAR_PLANE_M = 0.05
"""Triangles with a vertex nearer than this (metres) are dropped: no near-plane
clipping is done, and the synthetic scenes never put a body this close to the camera."""

DEGENERATE_AREA_PX2 = 1e-10
"""Triangles whose doubled screen area is below this (px^2) are edge-on; they cover no
pixel centre robustly and would divide by ~0 in the barycentric coefficients."""

_EMPTY_KEY = torch.iinfo(torch.int64).max
_INDEX_BITS = 32
_INDEX_MASK = (1 << _INDEX_BITS) - 1


@dataclass
class Fragments:
    """Rasteriser output for one ``height x width`` image."""

    face_index: Tensor
    """``(H, W)`` int64 index of the nearest triangle per pixel, ``-1`` for background."""
    depth: Tensor
    """``(H, W)`` float32 camera depth (metres) of the nearest surface, ``inf`` for background."""

    @property
    def mask(self) -> Tensor:
        """``(H, W)`` bool: pixel covered by any triangle."""
        return self.face_index >= 0


def _edge_coefficients(tri: Tensor) -> tuple[Tensor, Tensor]:
    """Barycentric coefficients of screen triangles, relative to their first vertex.

    ``tri`` is ``(F, 3, 2)``. Returns ``(coef, area2)``: ``coef`` ``(F, 2, 2)`` such that
    ``(w1, w2) = coef @ (x - x0, y - y0)`` and ``w0 = 1 - w1 - w2``; ``area2`` ``(F,)``
    is the signed doubled area. Working relative to ``(x0, y0)`` avoids the float32
    cancellation of the absolute edge-function form on sub-pixel triangles.
    """
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    area2 = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    coef = torch.stack(
        [torch.stack([e2[:, 1], -e2[:, 0]], dim=1), torch.stack([-e1[:, 1], e1[:, 0]], dim=1)], dim=1
    ) / area2[:, None, None]
    return coef, area2


def _weights(coef: Tensor, origin: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """``(P, 3)`` barycentric weights of pixel centres ``(px, py)`` in their triangles."""
    dx = px - origin[:, 0]
    dy = py - origin[:, 1]
    w1 = coef[:, 0, 0] * dx + coef[:, 0, 1] * dy
    w2 = coef[:, 1, 0] * dx + coef[:, 1, 1] * dy
    return torch.stack([1.0 - w1 - w2, w1, w2], dim=1)


def rasterize(points: Tensor, faces: Tensor, height: int, width: int) -> Fragments:
    """Z-buffer ``faces`` (``(F, 3)`` int64 into ``points`` ``(V, 3)`` = ``(u, v, z)``).

    Both triangle windings are drawn (no back-face culling), so open or inconsistently
    wound meshes render without holes; the depth test keeps the nearest surface.
    """
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points: expected (V, 3) screen points (u, v, z), got {tuple(points.shape)}")
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces: expected (F, 3) vertex indices, got {tuple(faces.shape)}")
    if faces.shape[0] >= _INDEX_MASK:
        raise ValueError(f"faces: at most {_INDEX_MASK - 1} triangles are supported, got {faces.shape[0]}")
    points = points.to(torch.float32)
    tri = points[faces]  # (F, 3, 3)
    lo = torch.ceil(tri[..., :2].amin(dim=1) - 0.5)  # (F, 2) first pixel column/row inside the box
    hi = torch.floor(tri[..., :2].amax(dim=1) - 0.5)
    lo = torch.maximum(lo, torch.zeros(2))
    hi = torch.minimum(hi, torch.tensor([width - 1.0, height - 1.0]))
    keep = (tri[..., 2].amin(dim=1) > NEAR_PLANE_M) & (hi >= lo).all(dim=1)
    idx = torch.nonzero(keep).squeeze(1)
    tri, lo, hi = tri[idx], lo[idx], hi[idx]
    coef, area2 = _edge_coefficients(tri[..., :2])
    ok = area2.abs() > DEGENERATE_AREA_PX2
    if not bool(ok.all()):
        idx, tri, lo, hi, coef = idx[ok], tri[ok], lo[ok], hi[ok], coef[ok]

    keys = torch.full((height * width,), _EMPTY_KEY, dtype=torch.int64)
    if idx.numel():
        span = (hi - lo + 1).long()  # (K, 2) box width, height in pixels
        count = span[:, 0] * span[:, 1]
        pair = torch.repeat_interleave(torch.arange(idx.numel()), count)
        local = torch.arange(int(count.sum())) - (torch.cumsum(count, 0) - count)[pair]
        nu = span[pair, 0]
        px = lo[pair, 0] + (local % nu).float() + 0.5
        py = lo[pair, 1] + torch.div(local, nu, rounding_mode="floor").float() + 0.5
        w = _weights(coef[pair], tri[pair, 0, :2], px, py)
        inside = (w >= 0).all(dim=1)
        inv_z = (w * (1.0 / tri[pair, :, 2])).sum(dim=1)
        inside &= inv_z > 0
        depth = (1.0 / inv_z[inside]).to(torch.float32)
        pix = py[inside].long() * width + px[inside].long()
        key = (depth.view(torch.int32).to(torch.int64) << _INDEX_BITS) | idx[pair[inside]]
        keys.scatter_reduce_(0, pix, key, reduce="amin")
    covered = keys != _EMPTY_KEY
    depth_bits = torch.where(covered, keys >> _INDEX_BITS, torch.zeros_like(keys))
    depth_buf = depth_bits.to(torch.int32).view(torch.float32).clone()
    depth_buf[~covered] = float("inf")
    tri_buf = torch.where(covered, keys & _INDEX_MASK, torch.full_like(keys, -1))
    return Fragments(face_index=tri_buf.view(height, width), depth=depth_buf.view(height, width))


def barycentrics(points: Tensor, faces: Tensor, fragments: Fragments) -> tuple[Tensor, Tensor, Tensor]:
    """Screen-space barycentric coordinates at every covered pixel.

    Returns ``(pixel_flat_index (P,), face (P,), bary (P, 3))`` for the ``P`` covered
    pixels (row-major order). Screen-space (not perspective-corrected) weights are used
    for shading attributes; over a body triangle of a few pixels the difference is far
    below one grey level.
    """
    height, width = fragments.face_index.shape
    flat = fragments.face_index.reshape(-1)
    pix = torch.nonzero(flat >= 0).squeeze(1)
    face = flat[pix]
    tri = points.to(torch.float32)[faces[face]][..., :2]
    coef, _ = _edge_coefficients(tri)
    px = (pix % width).float() + 0.5
    py = torch.div(pix, width, rounding_mode="floor").float() + 0.5
    w = _weights(coef, tri[:, 0], px, py)
    return pix, face, w.clamp(min=0.0)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals of a batch of meshes sharing ``faces``.

    ``vertices`` ``(B, V, 3)``, ``faces`` ``(F, 3)`` -> ``(B, V, 3)``.
    """
    tri = vertices[:, faces]  # (B, F, 3, 3)
    face_n = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    normals = torch.zeros_like(vertices)
    for corner in range(3):  # three scatter-adds (one per triangle corner), not a loop over data
        normals.index_add_(1, faces[:, corner], face_n)
    return torch.nn.functional.normalize(normals, dim=-1)

