"""Exact fast keypoints of a :class:`~annotator.body.BodyModel` for fitting, without the mesh.

A fit only needs the K keypoints of one joint convention, not the V (~14k) vertices the
body model poses on every call. Every non-joint keypoint is linear in the vertices
(landmarks pick one vertex, the open model's ``coco_*`` points are a linear regressor
``R``), and linear blend skinning is linear in the per-joint transforms ``A_j``::

    kp_k = sum_v R_kv sum_j w_vj A_j [v_posed_v; 1] = sum_j A_j M_kj,
    M_kj = sum_v R_kv w_vj [v_template_v + S_v beta + P_v phi(pose); 1]

with ``S`` the shape and ``P`` the pose blend shapes (``phi`` = SMPL's pose feature,
rotation matrices minus identity of joints 1..23). ``R w``, ``R w v_template``,
``R w S`` and ``R w P`` are precomputed once per (body model, convention), so a call
costs ``O(K * 24 * 217)`` per sample instead of ``O(V * 24 * 16)``. SMPL-joint keypoints
(``pelvis``, ``neck``, ...) are the posed kinematic joints, as in
:meth:`BodyModel.forward`. The kinematic chain uses smplx's own ``batch_rodrigues`` and
``batch_rigid_transform``, so the result equals ``body.forward(...).keypoints`` up to
float rounding (``tests/test_fitting_keypoints.py``).
"""
from __future__ import annotations

import weakref

import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues
from torch import Tensor

from annotator.body.joints import convention_index

NUM_JOINTS = 24
"""SMPL kinematic joints (the first 24 of ``BodyModel.keypoint_names``)."""
NUM_POSE_FEATURES = (NUM_JOINTS - 1) * 9

_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


class KinematicChain:
    """SMPL's shaped rest joints and rigid transforms of the 24 joints, without the mesh: the part
    of linear blend skinning that :class:`ConventionKeypoints` and :class:`VertexSubset` share."""

    def __init__(self, smpl, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        to = dict(device=device if device is not None else smpl.v_template.device,
                  dtype=dtype or smpl.v_template.dtype)
        f64 = dict(dtype=torch.float64, device="cpu")
        j_reg = smpl.J_regressor.to(**f64)
        self.joint_template = (j_reg @ smpl.v_template.to(**f64)).to(**to)  # (24, 3)
        self.joint_shape = torch.einsum("jv,vcl->jcl", j_reg, smpl.shapedirs.to(**f64)).to(**to)
        # kept on the CPU: smplx's kinematic chain indexes a Python list with it (no device syncs)
        self.parents = smpl.parents.cpu()

    def __call__(self, rot: Tensor, betas: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, 24, 3, 3)`` rotations (root first), ``(B, NB)`` betas -> SMPL's pose feature
        ``(B, 207)``, posed joints ``(B, 24, 3)`` and their transforms ``(B, 24, 4, 4)`` (no translation)."""
        b = betas.shape[0]
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        pose_feature = (rot[:, 1:] - eye).reshape(b, NUM_POSE_FEATURES)
        rest_joints = self.joint_template + torch.einsum("jcl,bl->bjc", self.joint_shape, betas)
        joints, transforms = batch_rigid_transform(rot, rest_joints, self.parents, dtype=rot.dtype)
        return pose_feature, joints, transforms


class ConventionKeypoints:
    """Keypoints of one convention as a function of SMPL parameters (see the module docstring)."""

    def __init__(self, body, convention: str, device: torch.device | str, dtype: torch.dtype):
        smpl = body.smpl
        index = convention_index(body.keypoint_names, convention).tolist()
        num_landmarks = int(body.landmark_vertex_ids.shape[0])
        num_vertices = body.num_vertices
        f64 = dict(dtype=torch.float64, device="cpu")
        rows = []
        for i in index:
            if i < NUM_JOINTS:
                continue
            if i < NUM_JOINTS + num_landmarks:
                row = torch.zeros(num_vertices, **f64)
                row[int(body.landmark_vertex_ids[i - NUM_JOINTS])] = 1.0
            else:
                row = body.keypoint_regressor[i - NUM_JOINTS - num_landmarks].to(**f64)
            rows.append(row)
        self.convention = convention
        self.num_betas = body.num_betas
        lin = torch.stack(rows) if rows else torch.zeros(0, num_vertices, **f64)
        support = torch.nonzero(lin.abs().sum(0) > 0).flatten()
        weights = smpl.lbs_weights.to(**f64)[support]  # (S, 24)
        rw = (lin[:, support, None] * weights[None]).permute(0, 2, 1)
        rw = rw.reshape(lin.shape[0] * NUM_JOINTS, support.numel())  # (L*24, S)
        v_template = smpl.v_template.to(**f64)[support]
        shapedirs = smpl.shapedirs.to(**f64)[support]  # (S, 3, NB)
        posedirs = smpl.posedirs.to(**f64).reshape(NUM_POSE_FEATURES, num_vertices, 3)[:, support]
        posedirs = posedirs.permute(1, 2, 0)  # (S, 3, 207)
        s = support.numel()
        to = dict(device=device, dtype=dtype)
        self.lin_template = (rw @ v_template).to(**to)  # (L*24, 3)
        m = rw.shape[0]
        self.lin_shape = (rw @ shapedirs.reshape(s, 3 * self.num_betas)).reshape(m, 3, self.num_betas).to(**to)
        self.lin_pose = (rw @ posedirs.reshape(s, 3 * NUM_POSE_FEATURES)).reshape(m, 3, NUM_POSE_FEATURES).to(**to)
        self.lin_weight = rw.sum(-1).to(**to)  # (L*24,) homogeneous coordinate
        self.chain = KinematicChain(smpl, device, dtype)
        self.num_linear = len(rows)
        # output order: keypoint i of the convention is row order[i] of cat([joints, linear])
        order, lin_pos = [], NUM_JOINTS
        for i in index:
            if i < NUM_JOINTS:
                order.append(i)
            else:
                order.append(lin_pos)
                lin_pos += 1
        self.order = torch.tensor(order, dtype=torch.long, device=device)

    def __call__(self, global_orient: Tensor, body_pose: Tensor, betas: Tensor,
                 transl: Tensor) -> tuple[Tensor, Tensor]:
        """Axis-angle ``(B, 3)``, ``(B, 69)``, betas ``(B, NB)``, ``transl`` ``(B, 3)`` ->
        ``(B, K, 3)`` convention keypoints and ``(B, 24, 3)`` posed SMPL joints."""
        b = betas.shape[0]
        rot = batch_rodrigues(torch.cat([global_orient, body_pose], dim=1).reshape(-1, 3)).reshape(b, NUM_JOINTS, 3, 3)
        return self.from_rotmat(rot, betas, transl)

    def from_rotmat(self, rot: Tensor, betas: Tensor, transl: Tensor) -> tuple[Tensor, Tensor]:
        """As :meth:`__call__`, from ``(B, 24, 3, 3)`` rotation matrices (root first)."""
        b = betas.shape[0]
        pose_feature, joints, transforms = self.chain(rot, betas)
        lin = (self.lin_template + torch.einsum("mcl,bl->bmc", self.lin_shape, betas)
               + torch.einsum("mcp,bp->bmc", self.lin_pose, pose_feature))
        homog = torch.cat([lin, self.lin_weight.expand(b, -1)[..., None]], dim=-1)
        homog = homog.reshape(b, self.num_linear, NUM_JOINTS, 4)
        linear = torch.einsum("bjrc,bkjc->bkr", transforms[:, :, :3, :], homog)
        keypoints = torch.cat([joints, linear], dim=1).index_select(1, self.order)
        return keypoints + transl[:, None], joints + transl[:, None]


def convention_keypoints(body, convention: str, device: torch.device | str | None = None,
                         dtype: torch.dtype | None = None) -> ConventionKeypoints:
    """The :class:`ConventionKeypoints` of ``body`` for ``convention``, built once and cached
    (per body model object, convention, device, dtype)."""
    ref = body.smpl.v_template
    device = torch.device(device) if device is not None else ref.device
    dtype = dtype or ref.dtype
    per_body = _CACHE.setdefault(body, {})
    key = (convention, str(device), dtype)
    if key not in per_body:
        per_body[key] = ConventionKeypoints(body, convention, device, dtype)
    return per_body[key]


class VertexSubset:
    """Posed positions of a fixed subset of the mesh's vertices (linear blend skinning of those
    vertices only), e.g. for a vertex loss that need not pose all ~14k vertices every step.
    Equals ``body.forward(...).vertices[:, vertex_ids]`` up to float rounding."""

    def __init__(self, body, vertex_ids: Tensor):
        smpl = body.smpl
        ids = torch.as_tensor(vertex_ids, dtype=torch.long)
        self.vertex_ids = ids
        self.template = smpl.v_template[ids]  # (S, 3)
        self.shapedirs = smpl.shapedirs[ids]  # (S, 3, NB)
        self.posedirs = smpl.posedirs.reshape(NUM_POSE_FEATURES, -1, 3)[:, ids]  # (207, S, 3)
        self.weights = smpl.lbs_weights[ids]  # (S, 24)
        self.chain = KinematicChain(smpl)

    def __call__(self, rot: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 24, 3, 3)`` rotations (root first), ``(B, NB)`` betas -> ``(B, S, 3)`` vertices and
        ``(B, 24, 3)`` posed joints (no translation)."""
        pose_feature, joints, transforms = self.chain(rot, betas)
        v = (self.template + torch.einsum("scl,bl->bsc", self.shapedirs, betas)
             + torch.einsum("psc,bp->bsc", self.posedirs, pose_feature))
        t = torch.einsum("sj,bjrc->bsrc", self.weights, transforms)  # (B, S, 4, 4)
        v = torch.einsum("bsrc,bsc->bsr", t[..., :3, :3], v) + t[..., :3, 3]
        return v, joints
