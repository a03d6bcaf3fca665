"""Training the 2D-keypoint lifter (:class:`annotator.model.lifter.Lifter`) from poses alone.

Each step draws poses from the pose set (mocap + the aux3d SMPL poses), places each person
in front of a random camera and projects its keypoints: the lifter learns the 2D-to-3D
mapping of the pose distribution without any image. The cameras are *generic*, not those
of any dataset: any yaw, a small lean, a share of arbitrary orientations (people lying,
upside down), fields of view and distances of photographs and studios alike, labels' noise
and missing keypoints (occlusion, truncation by the image border).

The keypoints of every pose (random betas) are computed once, without the mesh
(:func:`annotator.fitting.keypoints.convention_keypoints`); a step only rotates and projects
them. The loss (:func:`annotator.model.losses.lifter_loss`) is SPIN's rotation-matrix loss
on all 24 rotations plus a body-frame keypoint loss.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import roma
import torch
from torch import Tensor

from annotator.fitting.keypoints import convention_keypoints
from annotator.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from annotator.model.lifter import Lifter
from annotator.model.losses import lifter_loss

BETA_CLIP = 2.5
"""Random betas ~ N(0, I) clipped at +-2.5 sd (the shape space is unit-variance)."""
ANY_ROTATION_SHARE = 0.2
"""Share of views with a uniformly random root rotation (lying, upside down, ...)."""
LEAN_STD_RAD = 0.25
"""Std of the lean (about the camera's x and z axes) of the upright views (~14 deg)."""
FOV_DEG = (30.0, 80.0)
"""Horizontal field of view range."""
DEPTH_M = (2.0, 12.0)
"""Distance of the person's centre from the camera."""
IN_VIEW = (0.8, 0.7)
"""The centre projects within this share of the half field of view (x, y)."""
NOISE_MAX = 0.03
"""Per-view keypoint noise std, uniform in [0, NOISE_MAX] x the keypoints' extent."""
DROP_MAX = 0.3
"""Per-view probability of dropping a keypoint, uniform in [0, DROP_MAX]."""
TRUNCATION_SHARE = 0.15
"""Share of views cut by a horizontal image border (keypoints below it unlabelled)."""
TRUNCATION_KEEP = (0.4, 0.9)
"""The border lies this share of the keypoints' height below the top one."""
VIEW_FOCAL = 1000.0
"""Focal of the synthetic views in px (the inputs are focal-normalised, so any value)."""
KEYPOINT_CHUNK = 4096
WARMUP_SHARE = 0.05
"""Share of the steps the one-cycle learning rate rises over ..."""
MIN_WARMUP_STEPS = 2
"""... and at least this many (torch's one-cycle schedule divides by the warm-up length)."""
MIN_SCHEDULE_STEPS = 4


@dataclass
class LiftBatch:
    keypoints_2d: Tensor
    """(B, K, 3) px with confidence (0: unlabelled)."""
    focal: Tensor
    principal_point: Tensor
    rotmat: Tensor
    """(B, 24, 3, 3) target rotations (root in the camera frame)."""
    keypoints_3d: Tensor
    """(B, K, 3) body-frame target keypoints (root rotation removed, centred)."""


def pose_keypoints(body, convention: str, body_pose: Tensor, betas: Tensor) -> Tensor:
    """``(N, K, 3)`` keypoints of the poses with zero root rotation, centred on their mean."""
    kp_fn = convention_keypoints(body, convention, device="cpu", dtype=torch.float32)
    out = []
    with torch.no_grad():
        for bp, b in zip(body_pose.split(KEYPOINT_CHUNK), betas.split(KEYPOINT_CHUNK)):
            zeros = torch.zeros(len(bp), 3)
            out.append(kp_fn(zeros, bp, b, zeros)[0])
    kp = torch.cat(out)
    return kp - kp.mean(dim=1, keepdim=True)


def random_root(n: int, gen: torch.Generator) -> Tensor:
    """``(n, 3, 3)`` camera-frame root rotations: upright (head up in the image: 180 deg about
    x) with any yaw and a small lean, or, for a share, uniformly random."""
    yaw = torch.rand(n, generator=gen) * 2 * math.pi
    zeros = torch.zeros(n)
    lean = torch.randn(n, 3, generator=gen) * LEAN_STD_RAD
    lean[:, 1] = 0.0
    upright = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0]).expand(n, 3))
    rot = upright @ axis_angle_to_matrix(lean) @ axis_angle_to_matrix(torch.stack([zeros, yaw, zeros], 1))
    anyr = torch.rand(n, generator=gen) < ANY_ROTATION_SHARE
    quat = torch.randn(int(anyr.sum()), 4, generator=gen)
    rot[anyr] = roma.unitquat_to_rotmat(quat / quat.norm(dim=1, keepdim=True))
    return rot


def random_views(body_keypoints: Tensor, body_pose: Tensor, gen: torch.Generator) -> LiftBatch:
    """Views of posed people (``(B, K, 3)`` body-frame keypoints, ``(B, 69)`` poses) by random
    cameras (see the module constants)."""
    n, k = body_keypoints.shape[:2]
    root = random_root(n, gen)
    cam = body_keypoints @ root.transpose(1, 2)
    u = lambda lo, hi, *shape: lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=gen)  # noqa: E731
    half = torch.tan(torch.deg2rad(u(*FOV_DEG)) / 2)
    depth = u(*DEPTH_M)
    centre = torch.stack([u(-1, 1) * half * depth * IN_VIEW[0], u(-1, 1) * half * depth * IN_VIEW[1], depth], 1)
    pts = cam + centre[:, None]
    uv = pts[..., :2] / pts[..., 2:].clamp_min(0.1)
    extent = (uv.amax(1) - uv.amin(1)).amax(1)
    uv = uv + torch.randn(uv.shape, generator=gen) * (u(0, NOISE_MAX) * extent)[:, None, None]
    seen = torch.rand(n, k, generator=gen) >= u(0, DROP_MAX)[:, None]
    top = uv[..., 1].amin(1)
    height = uv[..., 1].amax(1) - top
    cut = torch.rand(n, generator=gen) < TRUNCATION_SHARE
    border = top + u(*TRUNCATION_KEEP) * height
    seen &= ~(cut[:, None] & (uv[..., 1] > border[:, None]))
    seen |= (seen.sum(1, keepdim=True) < 2)  # at least two labelled keypoints
    kp = torch.cat([uv * VIEW_FOCAL, seen.float()[..., None]], dim=-1)
    rotmat = torch.cat([root[:, None], axis_angle_to_matrix(body_pose.reshape(n, -1, 3))], dim=1)
    return LiftBatch(kp, torch.full((n,), VIEW_FOCAL), torch.zeros(n, 2), rotmat, body_keypoints)


def train_lifter(body, convention: str, body_poses: Tensor, steps: int, batch_size: int, lr: float,
                 seed: int, keypoint_weight: float, log: Callable[[int, dict[str, float]], None] | None = None,
                 log_every: int = 500) -> tuple[Lifter, dict[str, list[float]]]:
    """Train a lifter for ``convention`` on ``(N, 69)`` axis-angle body poses (CPU; Adam with a
    one-cycle schedule). Deterministic for a ``seed``; the global RNG is left untouched.
    Returns the model in eval mode and the per-``log_every`` mean losses."""
    if len(body_poses) == 0:
        raise ValueError("train_lifter: no poses")
    gen = torch.Generator().manual_seed(seed)
    poses = body_poses.float().reshape(len(body_poses), -1)[:, :69]
    betas = torch.randn(len(poses), body.num_betas, generator=gen).clamp(-BETA_CLIP, BETA_CLIP)
    kp3d = pose_keypoints(body, convention, poses, betas)
    kp_fn = convention_keypoints(body, convention, device="cpu", dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Lifter(kp3d.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    total = max(steps, MIN_SCHEDULE_STEPS)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total,
                                                pct_start=max(WARMUP_SHARE, MIN_WARMUP_STEPS / total))
    history: dict[str, list[float]] = {"step": [], "loss": [], "rotation": [], "keypoints": []}
    sums = {"loss": 0.0, "rotation": 0.0, "keypoints": 0.0}
    count, t0 = 0, time.monotonic()
    net.train()
    for step in range(steps):
        idx = torch.randint(0, len(poses), (batch_size,), generator=gen)
        views = random_views(kp3d[idx], poses[idx], gen)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + step)  # dropout masks, reproducible
            pred = net(views.keypoints_2d, views.focal, views.principal_point)
        pred_kp = None
        if keypoint_weight:
            zeros = torch.zeros(batch_size, 3)
            pred_kp = kp_fn(zeros, matrix_to_axis_angle(pred[:, 1:]).reshape(batch_size, -1), betas[idx], zeros)[0]
            pred_kp = pred_kp - pred_kp.mean(dim=1, keepdim=True)
        terms = lifter_loss(pred, views.rotmat, pred_kp, views.keypoints_3d, keypoint_weight)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        sched.step()
        for key in sums:
            sums[key] += float(terms[key].detach())
        count += 1
        if count == log_every or step == steps - 1:
            means = {key: v / count for key, v in sums.items()}
            history["step"].append(step + 1)
            for key, v in means.items():
                history[key].append(v)
            if log is not None:
                log(step + 1, {**means, "seconds": time.monotonic() - t0})
            sums = {key: 0.0 for key in sums}
            count = 0
    return net.eval(), history
