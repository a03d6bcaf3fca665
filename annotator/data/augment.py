"""Training augmentation (CLIFF/SPIN: scale, rotation, flip, colour, synthetic occlusion),
applied on the fly to cached *context crops*.

A cached crop (:mod:`annotator.data.crop_cache`) covers ``context`` times the network's crop
around the person at ``context`` times its resolution, so a jittered box, an in-plane
rotation or a mirrored box can be resampled from it in one ``grid_sample`` call on the
worker's device, with no image decode.

Every geometric augmentation is an exact transformation of the *full camera image*, so the
CLIFF full-frame losses stay exact (a rotation about the box centre, as HMR does it, is not a
camera motion for an off-centre person):

* **roll**: the image rotated by ``theta`` about the principal point ``p`` is what the same
  camera sees after rolling about its optical axis: 2D points ``x' = R2 (x - p) + p``, 3D
  points and the global orientation ``R3 X``, ``R3 R_root`` (``R3``: rotation about z);
* **flip**: the image mirrored about the vertical line through ``p``: ``x' = 2 p_x - x``;
  3D ``X' = diag(-1, 1, 1) X``; left/right joints swapped; SMPL axis-angles of every joint
  ``(a_x, -a_y, -a_z)`` with the left/right joints swapped (exact for a left/right
  symmetric rest pose);
* **box jitter**: a different person box in the same image (scale and shift of the box);
  nothing but the crop and the bbox information change.

Photometric: per-channel gain (``colour``) and one random grey rectangle over part of the
crop (``occlusion_prob``; the labels stay, as with CLIFF's synthetic occlusion).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from annotator.body.joints import get_convention
from annotator.body.joints import TRAIN_CONVENTION
from annotator.data.images import IMAGENET_MEAN, IMAGENET_STD
from annotator.geometry.cameras import bbox_info
from annotator.geometry.crop import apply_affine, crop_affine, invert_affine
from annotator.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle



@dataclass(frozen=True)
class AugmentParams:
    """Per-sample parameters of one augmentation draw (all (B,) or (B, 2) tensors)."""

    flip: Tensor
    """(B,) bool: mirror the image about the principal point's vertical line."""
    theta: Tensor
    """(B,) radians: camera roll (image rotated about the principal point)."""
    scale: Tensor
    """(B,) box side factor (> 1: zoom out)."""
    shift: Tensor
    """(B, 2) box centre shift in units of the box side."""

    @staticmethod
    def identity(batch: int, device=None) -> "AugmentParams":
        z = torch.zeros(batch, device=device)
        return AugmentParams(flip=torch.zeros(batch, dtype=torch.bool, device=device), theta=z, scale=z + 1.0,
                             shift=torch.zeros(batch, 2, device=device))

    @staticmethod
    def sample(batch: int, cfg, generator: torch.Generator, device=None) -> "AugmentParams":
        """One draw from the :class:`~annotator.config.AugmentConfig` ranges (CLIFF's recipe:
        flip with p=0.5, rotation with p=``rotation_prob`` clipped at 2 sigma, scale and shift
        uniform)."""
        u = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
        flip = u(batch) < cfg.flip_prob
        theta = torch.randn(batch, generator=generator).clamp(-2, 2) * math.radians(cfg.rotation_deg) / 2
        theta = torch.where(u(batch) < cfg.rotation_prob, theta, torch.zeros_like(theta))
        scale = 1.0 + (2 * u(batch) - 1) * cfg.scale
        shift = (2 * u(batch, 2) - 1) * cfg.shift
        return AugmentParams(flip=flip.to(device), theta=theta.to(device), scale=scale.to(device),
                             shift=shift.to(device))


def image_transform(params: AugmentParams, principal_point: Tensor) -> Tensor:
    """(B, 2, 3) map of full-image px to augmented full-image px: ``x' = R F (x - p) + p``."""
    c, s = torch.cos(params.theta), torch.sin(params.theta)
    fx = torch.where(params.flip, -1.0, 1.0).to(c.dtype)
    lin = torch.stack([torch.stack([c * fx, -s], -1), torch.stack([s * fx, c], -1)], -2)  # R @ diag(fx, 1)
    p = principal_point.to(c.dtype)
    t = p - (lin @ p[:, :, None])[..., 0]
    return torch.cat([lin, t[:, :, None]], dim=-1)


def _compose(a: Tensor, b: Tensor) -> Tensor:
    """(B, 2, 3) affine ``a o b`` (apply ``b`` first)."""
    lin = a[:, :, :2] @ b[:, :, :2]
    return torch.cat([lin, a[:, :, :2] @ b[:, :, 2:] + a[:, :, 2:]], dim=-1)


def resample_crops(ctx_img: Tensor, ctx_affine: Tensor, out_affine: Tensor, out_size: int,
                   transform: Tensor | None = None) -> Tensor:
    """Resample (B, 3, Sc, Sc) context crops into (B, 3, S, S) crops.

    ``ctx_affine``: original image px -> context px; ``out_affine``: augmented image px -> crop
    px; ``transform``: original -> augmented image px (None: identity). Bilinear, zero outside
    the context crop (``align_corners=False``: the project's pixel convention)."""
    to_orig = invert_affine(out_affine)
    if transform is not None:
        to_orig = _compose(invert_affine(transform), to_orig)
    out_to_ctx = _compose(ctx_affine.to(to_orig.dtype), to_orig)
    ticks = torch.arange(out_size, dtype=to_orig.dtype, device=to_orig.device) + 0.5
    gy, gx = torch.meshgrid(ticks, ticks, indexing="ij")
    pts = torch.stack([gx, gy], dim=-1).reshape(1, -1, 2).expand(len(to_orig), -1, -1)
    grid = 2.0 * apply_affine(pts, out_to_ctx) / ctx_img.shape[-1] - 1.0
    grid = grid.reshape(len(to_orig), out_size, out_size, 2).to(ctx_img.dtype)
    return F.grid_sample(ctx_img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _roll_matrix(theta: Tensor) -> Tensor:
    c, s, z, o = torch.cos(theta), torch.sin(theta), torch.zeros_like(theta), torch.ones_like(theta)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)


def _flip_axis_angle(aa: Tensor, perm: list[int] | None) -> Tensor:
    """(B, J, 3) axis-angles of a mirrored body (mirror x): swap joints, negate y and z."""
    out = aa[:, perm] if perm is not None else aa
    return out * out.new_tensor([1.0, -1.0, -1.0])


def _transform_smpl(batch: dict[str, Tensor], prefix: str, params: AugmentParams, roll: Tensor) -> None:
    go, bp = f"{prefix}_global_orient", f"{prefix}_body_pose"
    if go not in batch:
        return
    n = len(params.flip)
    root = batch[go].reshape(n, 1, 3)
    pose = batch[bp].reshape(n, 23, 3)
    smpl_perm = get_convention("smpl24").flip_permutation()
    flipped_all = _flip_axis_angle(torch.cat([root, pose], 1), smpl_perm)
    full = torch.where(params.flip[:, None, None], flipped_all, torch.cat([root, pose], 1))
    root_rot = roll @ axis_angle_to_matrix(full[:, 0])
    batch[go] = matrix_to_axis_angle(root_rot)
    batch[bp] = full[:, 1:].reshape(n, 69)


def augment_batch(batch: dict[str, Tensor], params: AugmentParams, crop_size: int,
                  colour: float = 0.0, occlusion_prob: float = 0.0, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """A model batch of context crops -> the model batch of augmented network crops.

    ``batch`` is :func:`annotator.data.batching.to_model_batch` output of cached rows: ``img``
    holds (normalised) context crops, ``affine`` their image->context map, ``center`` and
    ``box_size`` the person's square box (side = ``bbox_scale * max(w, h)``). Returns a new
    dict with ``img`` (B, 3, S, S), new ``center``/``box_size``/``affine``/``bbox_info`` and
    the targets (2D/3D keypoints, SMPL and prior parameters) in the augmented frame."""
    out = dict(batch)
    n = batch["img"].shape[0]
    pp = batch["principal_point"]
    transform = image_transform(params, pp)
    center = apply_affine(batch["center"][:, None].to(transform.dtype), transform)[:, 0]
    box = batch["box_size"] * params.scale.to(batch["box_size"].dtype)
    center = center + params.shift.to(center.dtype) * box[:, None]
    affine = crop_affine(center, box, float(crop_size))
    out["img"] = resample_crops(batch["img"], batch["affine"], affine, crop_size, transform)
    out["center"], out["box_size"], out["affine"] = center.float(), box.float(), affine.float()
    out["bbox_info"] = bbox_info(out["center"], out["box_size"], batch["focal"], batch["image_size"], pp)

    kp_perm = get_convention(TRAIN_CONVENTION).flip_permutation()
    flip3 = params.flip[:, None, None]
    if "keypoints_2d" in batch:
        kp = torch.where(flip3, batch["keypoints_2d"][:, kp_perm], batch["keypoints_2d"])
        xy = apply_affine(kp[..., :2], transform.to(kp.dtype))
        out["keypoints_2d"] = torch.cat([xy, kp[..., 2:]], -1)
    roll = _roll_matrix(params.theta.float())
    if "joints_3d" in batch:
        j = torch.where(flip3, batch["joints_3d"][:, kp_perm], batch["joints_3d"])
        xyz = j[..., :3] * torch.where(flip3, j.new_tensor([-1.0, 1.0, 1.0]), j.new_tensor([1.0, 1.0, 1.0]))
        out["joints_3d"] = torch.cat([xyz @ roll.transpose(-1, -2), j[..., 3:]], -1)
    for prefix in ("smpl", "prior"):
        _transform_smpl(out, prefix, params, roll)
    if "smpl_transl" in out:  # root-aligned losses never read it; mark it unusable rather than wrong
        out["smpl_transl"] = torch.full_like(out["smpl_transl"], float("nan"))

    if colour > 0:
        gain = 1.0 + (2 * torch.rand(n, 3, 1, 1, generator=generator) - 1) * colour
        out["img"] = _apply_gain(out["img"], gain.to(out["img"].device))
    if occlusion_prob > 0:
        out["img"] = _occlude(out["img"], occlusion_prob, generator)
    return out


def _apply_gain(img: Tensor, gain: Tensor) -> Tensor:
    """Per-channel gain in [0, 1] pixel units on ImageNet-normalised images (clipped to [0, 1])."""
    mean = img.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = img.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    raw = ((img * std + mean) * gain).clamp(0, 1)
    return (raw - mean) / std


def _occlude(img: Tensor, prob: float, generator: torch.Generator | None) -> Tensor:
    """One rectangle of 10-40% of the side, at a random place, filled with the mean colour (0
    after normalisation), on ``prob`` of the crops."""
    n, _, s, _ = img.shape
    r = torch.rand(n, 5, generator=generator)
    use = r[:, 0] < prob
    w = (0.1 + 0.3 * r[:, 1]) * s
    h = (0.1 + 0.3 * r[:, 2]) * s
    x0 = r[:, 3] * (s - w)
    y0 = r[:, 4] * (s - h)
    ticks = torch.arange(s, dtype=torch.float32) + 0.5
    inx = (ticks[None] >= x0[:, None]) & (ticks[None] < (x0 + w)[:, None])
    iny = (ticks[None] >= y0[:, None]) & (ticks[None] < (y0 + h)[:, None])
    mask = (iny[:, :, None] & inx[:, None, :] & use[:, None, None]).to(img.device)
    return img.masked_fill(mask[:, None], 0.0)


__all__ = ["AugmentParams", "augment_batch", "image_transform", "resample_crops"]
