"""The body model every stage uses: SMPL-format, ``smplx.SMPL`` underneath, for both kinds.

``kind: open`` loads the SMPL-format model built from anny (:mod:`annotator.body.open_model`,
built into the cache on first use); ``kind: smpl`` loads a user's chumpy-free
``SMPL_NEUTRAL.pkl``. Both go through :func:`load_body_model` and the same
:class:`BodyModel.forward`, so nothing downstream knows which one it got.

Keypoints (:attr:`BodyModel.keypoint_names`): the 24 SMPL joints (J_regressor), the
landmarks of :data:`LANDMARK_NAMES` picked by the model's *own* vertex ids (smplx's built-in
extra joints use SMPL vertex indices and would be silently wrong for another topology, so
they are never used), and - when the model file carries one - a linear keypoint regressor
(the open model stores anny's COCO-17 + 6 foot points as ``coco_<name>``).
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from annotator import storage
from annotator.body.joints import LANDMARK_NAMES, NUM_JOINTS, NUM_POSE_BASIS, SMPL_JOINT_NAMES
from annotator.config import BodyModelConfig

SMPL_LANDMARK_VERTEX_IDS = {
    "nose": 332, "left_eye": 2800, "right_eye": 6260, "left_ear": 583, "right_ear": 4071,
    "left_big_toe": 3216, "left_small_toe": 3226, "left_heel": 3387,
    "right_big_toe": 6617, "right_small_toe": 6624, "right_heel": 6787, "head_top": 411,
}
"""Landmark vertex ids in the SMPL topology (the ones smplx/SPIN use; head_top as in CLIFF)."""

SMPL_NUM_VERTICES = 6890
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


@dataclass
class BodyOutput:
    """Posed body. All tensors in metres, in the frame given by ``global_orient``/``transl``."""

    vertices: torch.Tensor
    """(B, V, 3) mesh vertices."""
    joints: torch.Tensor
    """(B, 24, 3) SMPL joints (from the J_regressor, posed by the kinematic chain)."""
    keypoints: torch.Tensor
    """(B, K, 3) in :attr:`BodyModel.keypoint_names` order."""


class BodyModel(torch.nn.Module):
    """SMPL-format body model; see the module docstring.

    Attributes: ``smpl`` (the ``smplx.SMPL`` doing the skinning), ``keypoint_names``,
    ``model_id``, ``checksum`` (sha256 of the loaded file), ``info`` (the file's
    ``build_info``, if any). Built by :func:`load_body_model`.
    """

    def __init__(self, smpl, landmark_vertex_ids: list[int], regressor: torch.Tensor | None,
                 regressor_names: list[str], model_id: str, checksum: str, info: dict[str, Any]) -> None:
        super().__init__()
        self.smpl = smpl
        self.model_id = model_id
        self.checksum = checksum
        self.info = info
        self.keypoint_names = list(SMPL_JOINT_NAMES) + list(LANDMARK_NAMES) + list(regressor_names)
        self.register_buffer("landmark_vertex_ids", torch.as_tensor(landmark_vertex_ids, dtype=torch.long))
        self.register_buffer("keypoint_regressor", regressor)  # (K2, V) or None

    @property
    def faces(self) -> torch.Tensor:
        """(F, 3) triangle vertex indices."""
        return self.smpl.faces_tensor

    @property
    def parents(self) -> torch.Tensor:
        """(24,) SMPL kintree parents (root: -1)."""
        return self.smpl.parents

    @property
    def skinning_weights(self) -> torch.Tensor:
        """(V, 24) linear-blend-skinning weights (rows sum to 1)."""
        return self.smpl.lbs_weights

    @property
    def num_betas(self) -> int:
        return int(self.smpl.num_betas)

    @property
    def num_vertices(self) -> int:
        return int(self.smpl.v_template.shape[0])

    def forward(self, global_orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor,
                transl: torch.Tensor | None = None, pose2rot: bool = True) -> BodyOutput:
        """Pose the body.

        ``pose2rot=True``: axis-angle ``global_orient`` (B, 3), ``body_pose`` (B, 69).
        ``pose2rot=False``: rotation matrices (B, 1, 3, 3) and (B, 23, 3, 3).
        ``betas`` (B, num_betas) or (1, num_betas); ``transl`` (B, 3) or None.
        """
        if betas.shape[-1] != self.num_betas:
            raise ValueError(f"betas has {betas.shape[-1]} components, model {self.model_id} uses {self.num_betas}")
        out = self.smpl(global_orient=global_orient, body_pose=body_pose, betas=betas, transl=transl,
                        pose2rot=pose2rot, return_verts=True)
        vertices = out.vertices
        joints = out.joints[:, :NUM_JOINTS]  # smplx appends its SMPL-index extra joints: dropped
        parts = [joints, vertices.index_select(1, self.landmark_vertex_ids)]
        if self.keypoint_regressor is not None:
            parts.append(torch.einsum("kv,bvd->bkd", self.keypoint_regressor, vertices))
        return BodyOutput(vertices=vertices, joints=joints, keypoints=torch.cat(parts, dim=1))

    def rest_output(self, betas: torch.Tensor | None = None) -> BodyOutput:
        """Zero pose (T-pose, SMPL y-up frame), ``betas`` default zeros (1, num_betas)."""
        dev, dt = self.smpl.v_template.device, self.smpl.v_template.dtype
        if betas is None:
            betas = torch.zeros(1, self.num_betas, device=dev, dtype=dt)
        b = betas.shape[0]
        zeros = torch.zeros(b, 3, device=dev, dtype=dt)
        return self.forward(zeros, torch.zeros(b, 3 * (NUM_JOINTS - 1), device=dev, dtype=dt), betas)


def _check_arrays(data: dict[str, Any], path: str) -> None:
    where = storage.redact(path)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{where}: not an SMPL-format model, missing keys {missing}")
    n_verts = np.shape(data["v_template"])[0]
    expected = {
        "v_template": (n_verts, 3), "J_regressor": (NUM_JOINTS, n_verts), "weights": (n_verts, NUM_JOINTS),
        "posedirs": (n_verts, 3, NUM_POSE_BASIS),
    }
    for key, shape in expected.items():
        if tuple(np.shape(data[key])) != shape:
            raise ValueError(f"{where}: key {key!r} has shape {tuple(np.shape(data[key]))}, expected {shape}")
    sd = np.shape(data["shapedirs"])
    if len(sd) != 3 or sd[:2] != (n_verts, 3):
        raise ValueError(f"{where}: key 'shapedirs' has shape {sd}, expected ({n_verts}, 3, num_betas)")


def _landmark_ids(data: dict[str, Any], path: str) -> list[int]:
    ids = data.get("vertex_ids")
    n_verts = int(np.shape(data["v_template"])[0])
    if ids is None:
        if n_verts != SMPL_NUM_VERTICES:
            raise ValueError(f"{storage.redact(path)}: {n_verts} vertices (not SMPL's {SMPL_NUM_VERTICES}) "
                             "and no 'vertex_ids' entry naming its landmark vertices")
        ids = SMPL_LANDMARK_VERTEX_IDS
    missing = [n for n in LANDMARK_NAMES if n not in ids]
    if missing:
        raise ValueError(f"{storage.redact(path)}: 'vertex_ids' lacks landmarks {missing}")
    out = [int(ids[n]) for n in LANDMARK_NAMES]
    bad = [n for n, i in zip(LANDMARK_NAMES, out) if not 0 <= i < n_verts]
    if bad:
        raise ValueError(f"{storage.redact(path)}: landmark vertex ids out of range for {bad}")
    return out


def build_body_model(data: dict[str, Any], path: str, checksum: str, num_betas: int,
                     model_id: str | None = None) -> BodyModel:
    """Wrap an SMPL-format dict (already unpickled) into a :class:`BodyModel`."""
    import smplx
    from smplx.utils import Struct

    _check_arrays(data, path)
    available = int(np.shape(data["shapedirs"])[-1])
    if num_betas > available:
        raise ValueError(f"{storage.redact(path)}: body_model.num_betas={num_betas} but the model has "
                         f"only {available} shape components")
    landmark_ids = _landmark_ids(data, path)
    regressor, names = None, []
    if "keypoint_regressor" in data:
        regressor = torch.as_tensor(np.asarray(data["keypoint_regressor"], dtype=np.float32))
        names = [str(n) for n in data.get("keypoint_regressor_names", [])]
        if regressor.shape != (len(names), np.shape(data["v_template"])[0]):
            raise ValueError(f"{storage.redact(path)}: 'keypoint_regressor' shape {tuple(regressor.shape)} "
                             f"does not match {len(names)} names x {np.shape(data['v_template'])[0]} vertices")
    # smplx prints a warning for models with < 300 shape components; keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        smpl = smplx.SMPL(model_path=path, data_struct=Struct(**data), num_betas=num_betas,
                          create_betas=False, create_global_orient=False, create_body_pose=False,
                          create_transl=False, dtype=torch.float32)
    if smpl.num_betas != num_betas:  # smplx silently keeps 10 of a model with fewer than 300 components
        raise ValueError(f"{storage.redact(path)}: body_model.num_betas={num_betas} but smplx uses only "
                         f"{smpl.num_betas} of this model's {available} shape components (models with fewer "
                         f"than {smplx.SMPL.SHAPE_SPACE_DIM} components give at most 10)")
    if model_id is None:
        model_id = str(data.get("model_id") or f"smpl:{os.path.basename(path.rstrip('/'))}")
    info = {k: data[k] for k in ("build_info",) if k in data}
    return BodyModel(smpl, landmark_ids, regressor, names, model_id, checksum, info)


def load_body_model(cfg: BodyModelConfig, device: str | torch.device = "cpu") -> BodyModel:
    """Load the configured body model (building the open one into the cache if needed)."""
    from annotator.body.smpl_convert import load_smpl_dict

    if cfg.kind == "open":
        from annotator.body.open_model import ensure_open_model

        path = cfg.path or ensure_open_model(cfg.cache_dir)
    else:
        path = cfg.path
    if not storage.exists(path):
        raise FileNotFoundError(f"body_model.path: {storage.redact(path)} does not exist")
    raw = storage.read_bytes(path)
    data = load_smpl_dict(path, raw)
    model_id = None if cfg.kind == "open" else f"smpl:{os.path.basename(path.rstrip('/'))}"
    model = build_body_model(data, path, storage.sha256_hex(raw), cfg.num_betas, model_id=model_id)
    return model.to(device).eval()
