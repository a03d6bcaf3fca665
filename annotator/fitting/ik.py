"""Training and running the IK network (:class:`annotator.model.ik.IKNet`) from poses alone.

Each step draws poses from the pose set (the synthetic world's mocap + any SMPL poses the user
has), shapes ``beta ~ N(0, I)`` clipped, and a root rotation (upright with any yaw and a lean,
or for a share uniformly random: :func:`annotator.fitting.lifter.random_root`), poses the body
and takes its joints in the input convention. The inputs get the corruptions of *Best of both
worlds* Tab. 4: Gaussian noise on every joint and a share of the joints zeroed (missing). The
loss (:func:`annotator.model.losses.ik_loss`) is L1 on theta, beta, joints and vertices.

:func:`ik_fit` turns a file's 3D joints into SMPL parameters: the network's rotations and
shape, and the translation that puts the model's root where the joints' root is.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from annotator.body.joints import get_convention, select_keypoints
from annotator.config import AuxAnnotatorConfig
from annotator.fitting.keypoints import VertexSubset, convention_keypoints
from annotator.fitting.lifter import BETA_CLIP, random_root
from annotator.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from annotator.model.ik import IKNet, ik_inputs
from annotator.model.losses import ik_loss

_JOB_DEFAULTS = AuxAnnotatorConfig()


@dataclass(frozen=True)
class IKTraining:
    """How the IK network is trained. ``steps``, ``batch_size`` and ``lr`` default to the job's
    ``aux_annotator`` defaults (:class:`annotator.config.AuxAnnotatorConfig`), which ``annotator ik``
    uses as well; the job's values are mapped onto it by step ``annotate-aux``."""

    steps: int = _JOB_DEFAULTS.steps
    batch_size: int = _JOB_DEFAULTS.batch_size
    lr: float = _JOB_DEFAULTS.lr
    """Peak learning rate of the one-cycle schedule (Adam)."""
    noise_m: float = 0.01
    """Std of the Gaussian noise added to every input joint (metres; the paper's Tab. 4 range)."""
    drop: float = 0.3
    """Share of the input joints zeroed per sample (the paper's 30%)."""
    weights: dict[str, float] = field(default_factory=lambda: {"theta": 1.0, "beta": 0.1, "joints": 1.0,
                                                               "vertices": 1.0})
    seed: int = 0
    log_every: int = 250


WARMUP_SHARE = 0.05
MIN_SCHEDULE_STEPS = 4


VERTEX_STRIDE = 16
"""The vertex loss uses every 16th vertex of the mesh (about 860 of the open model's 13,718):
the L1 mean over an even subsample, at a sixteenth of the skinning cost."""


class _Poser:
    """Root-relative convention joints and vertex subset of posed bodies (no full mesh)."""

    def __init__(self, body, convention: str):
        self.keypoints = convention_keypoints(body, convention, device="cpu", dtype=torch.float32)
        self.vertices = VertexSubset(body, torch.arange(0, body.num_vertices, VERTEX_STRIDE))
        self.root = list(get_convention(convention).root)

    def __call__(self, rot: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(len(rot), 3, dtype=rot.dtype)
        joints, _ = self.keypoints.from_rotmat(rot, betas, zeros)
        verts, _ = self.vertices(rot, betas)
        centre = joints[:, self.root].mean(dim=1, keepdim=True)
        return joints - centre, verts - centre


def pose_batch(body, convention: str, global_orient_rot: Tensor, body_pose: Tensor, betas: Tensor):
    """Root-relative ``(B, K, 3)`` convention joints and vertex subset (every
    :data:`VERTEX_STRIDE`-th) of posed bodies: root rotations ``(B, 3, 3)``, axis-angle body
    pose ``(B, 69)``; both minus the centre of the convention's root joints."""
    n = len(body_pose)
    rot = torch.cat([global_orient_rot[:, None], axis_angle_to_matrix(body_pose.reshape(n, -1, 3))], dim=1)
    return _Poser(body, convention)(rot, betas)


def train_ik(body, convention: str, body_poses: Tensor, settings: IKTraining = IKTraining(),
             log: Callable[[int, dict[str, float]], None] | None = None) -> tuple[IKNet, dict[str, list[float]]]:
    """Train an IK network for ``convention`` on ``(N, 69)`` axis-angle body poses (Adam,
    one-cycle). Deterministic for ``settings.seed``; the global RNG is left untouched. Returns
    the network in eval mode and the per-``log_every`` mean loss terms."""
    if len(body_poses) == 0:
        raise ValueError("train_ik: no poses")
    s = settings
    conv = get_convention(convention)
    gen = torch.Generator().manual_seed(s.seed)
    poses = body_poses.float().reshape(len(body_poses), -1)[:, :69]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        net = IKNet(conv.num_joints, list(conv.root), body.num_betas)
    poser = _Poser(body, convention)
    opt = torch.optim.Adam(net.parameters(), lr=s.lr)
    total = max(s.steps, MIN_SCHEDULE_STEPS)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=total,
                                                pct_start=max(WARMUP_SHARE, 2 / total))
    keys = ("loss", "theta", "beta", "joints", "vertices")
    history: dict[str, list[float]] = {"step": [], **{k: [] for k in keys}}
    sums, count, t0 = dict.fromkeys(keys, 0.0), 0, time.monotonic()
    net.train()
    for step in range(s.steps):
        idx = torch.randint(0, len(poses), (s.batch_size,), generator=gen)
        betas = torch.randn(s.batch_size, body.num_betas, generator=gen).clamp(-BETA_CLIP, BETA_CLIP)
        root = random_root(s.batch_size, gen)
        target_rot = torch.cat([root[:, None], axis_angle_to_matrix(poses[idx].reshape(s.batch_size, -1, 3))], 1)
        with torch.no_grad():
            joints, verts = poser(target_rot, betas)
        noisy = joints + torch.randn(joints.shape, generator=gen) * s.noise_m
        present = (torch.rand(joints.shape[:2], generator=gen) >= s.drop).float()
        pred = net(noisy, present)
        pj, pv = poser(pred["rotmat"], pred["betas"])
        terms = ik_loss(pred["rotmat"], target_rot, pred["betas"], betas, pj, joints, pv, verts, s.weights)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        sched.step()
        for k in keys:
            sums[k] += float(terms[k].detach())
        count += 1
        if count == s.log_every or step == s.steps - 1:
            means = {k: v / count for k, v in sums.items()}
            history["step"].append(step + 1)
            for k, v in means.items():
                history[k].append(v)
            if log is not None:
                log(step + 1, {**means, "seconds": time.monotonic() - t0})
            sums, count = dict.fromkeys(keys, 0.0), 0
    return net.eval(), history


@torch.no_grad()
def ik_fit(net: IKNet, body, convention: str, joints: Tensor, present: Tensor, chunk: int = 4096) -> dict[str, Tensor]:
    """SMPL parameters of ``(N, K, 3)`` joints (metres, any frame; ``present`` ``(N, K)``): axis-angle
    ``global_orient`` (N, 3) and ``body_pose`` (N, 69) in the joints' frame, ``betas``, and
    ``transl`` putting the model's root-joint centre on the joints' one; ``joint_err`` (N,) is the
    mean distance (metres) of the present joints to the model's."""
    net.eval()
    conv = get_convention(convention)
    root_mask = torch.zeros(conv.num_joints)
    root_mask[list(conv.root)] = 1.0
    out: dict[str, list[Tensor]] = {k: [] for k in ("global_orient", "body_pose", "betas", "transl", "joint_err")}
    for j, p in zip(joints.float().split(chunk), present.float().split(chunk)):
        pred = net(j, p)
        n = len(j)
        aa = matrix_to_axis_angle(pred["rotmat"]).reshape(n, -1)
        posed = body(global_orient=aa[:, :3], body_pose=aa[:, 3:], betas=pred["betas"])
        model_j = select_keypoints(posed.keypoints, body.keypoint_names, convention)
        r = p * root_mask
        use = torch.where(r.sum(1, keepdim=True) > 0, r, p)  # the present root joints, or all present ones
        w = use[..., None] / use.sum(1).clamp_min(1)[:, None, None]
        transl = ((j - model_j) * w).sum(1)
        err = torch.linalg.norm(model_j + transl[:, None] - j, dim=-1)
        out["global_orient"].append(aa[:, :3])
        out["body_pose"].append(aa[:, 3:])
        out["betas"].append(pred["betas"])
        out["transl"].append(transl)
        out["joint_err"].append((err * p).sum(1) / p.sum(1).clamp_min(1))
    return {k: torch.cat(v) for k, v in out.items()}


__all__ = ["IKTraining", "train_ik", "ik_fit", "ik_inputs", "pose_batch"]
