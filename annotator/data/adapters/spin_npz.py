"""SPIN-style ``.npz`` (Human3.6M, MPI-INF-3DHP, 3DPW, and the synthetic world) -> rows.

Keys (N rows; ``sample_id = "<dataset>/<row>"``, so a ground-truth file keyed by the same
row index joins on it):

* required: ``imgname`` (N,) image names relative to the image root, ``center`` (N, 2),
  ``scale`` (N,) (box side / 200 px: box = ``center +- 100 * scale``), ``part`` (N, K, 3)
  2D keypoints ``(x, y, confidence)``;
* optional: ``S`` (N, K3, 4 or 3) 3D joints (+ confidence) in metres, camera frame;
  ``pose`` (N, 72) SMPL axis-angle (root first), ``shape`` (N, 10), ``has_smpl`` (N,),
  ``transl`` (N, 3); ``focal_length`` (N,), ``principal_point`` (N, 2),
  ``image_width``/``image_height`` (N,); ``keypoint_convention`` and
  ``joints_3d_convention`` (string scalars).

With a ``keypoint_convention`` key, ``part`` is taken as-is in that convention (the
synthetic world writes ``coco17``); likewise ``S`` with ``joints_3d_convention``.
Without them (the real SPIN files), ``part`` and ``S`` are in SPIN's 24-joint order
(:data:`SPIN24_NAMES`: the LSP 14, then MPII/H36M extras, then the COCO face points) and
are mapped by name with :data:`SPIN24_TO_COCO17` and :data:`SPIN24_TO_H36M17`. Note
that SPIN's hips are LSP hips (close to COCO's), so the mapping is by body part, not a
claim of identical points. A row gets ``has_3d`` only if every mapped 3D joint has
confidence > 0 (otherwise ``joints_3d`` is null); SMPL columns are null where
``has_smpl`` is 0.
"""
from __future__ import annotations

import io

import numpy as np

from annotator.config import DatasetConfig, ManifestConfig
from annotator.data.adapters.common import (AdapterResult, bbox_from_center_scale, image_root, read_bytes_or_fail,
                                            resolve_image_path, source_ref)
from annotator.data.manifest import ManifestError, columns_to_table, empty_rejects

#: SPIN's 24 "part" joints (constants.JOINT_NAMES[25:] of the SPIN code base).
SPIN24_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck_lsp", "head_top_lsp", "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m", "head_h36m",
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
)
#: coco17 joint i <- SPIN24 joint SPIN24_TO_COCO17[i] (same body part).
SPIN24_TO_COCO17 = (19, 20, 21, 22, 23, 9, 8, 10, 7, 11, 6, 3, 2, 4, 1, 5, 0)
#: h36m17 joint i <- SPIN24 joint SPIN24_TO_H36M17[i]: pelvis, r-hip, r-knee, r-ankle,
#: l-hip, l-knee, l-ankle, spine, thorax, neck/nose (H36M jaw), head, l-shoulder,
#: l-elbow, l-wrist, r-shoulder, r-elbow, r-wrist.
SPIN24_TO_H36M17 = (14, 2, 1, 0, 3, 4, 5, 16, 15, 17, 18, 9, 10, 11, 8, 7, 6)
SPIN_NUM_JOINTS = len(SPIN24_NAMES)
SMPL_POSE_DIM = 72
SMPL_BETAS = 10

REQUIRED_KEYS = ("imgname", "center", "scale", "part")


def _string_key(data, key: str, path: str) -> str | None:
    if key not in data:
        return None
    arr = np.asarray(data[key])
    if arr.size != 1:
        raise ManifestError(f"{path}: key {key!r} must be a single string, got shape {arr.shape}")
    return str(arr.reshape(()).item())


def _array(data, key: str, path: str, shape: tuple, n: int) -> np.ndarray | None:
    """``data[key]`` as float64 reshaped to ``(n, *shape)``; ManifestError naming key/shape."""
    if key not in data:
        return None
    arr = np.asarray(data[key])
    if arr.shape[:1] != (n,):
        raise ManifestError(f"{path}: key {key!r} has {arr.shape[0] if arr.ndim else 0} rows, 'imgname' has {n}")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ManifestError(f"{path}: key {key!r} is not numeric (dtype {arr.dtype})") from None
    expected = (n, *shape)
    try:
        return arr.reshape(expected)
    except ValueError:
        raise ManifestError(f"{path}: key {key!r} has shape {arr.shape}, expected {expected}") from None


def read_spin_npz(ds: DatasetConfig, mcfg: ManifestConfig) -> AdapterResult:
    """Read a SPIN-style npz into candidate rows (all rows; validation rejects bad ones)."""
    path = ds.path
    raw = read_bytes_or_fail(path, "npz file")
    try:
        data = dict(np.load(io.BytesIO(raw), allow_pickle=False))
    except (ValueError, OSError, EOFError) as err:
        raise ManifestError(f"{path}: not a readable npz file: {err}") from None
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ManifestError(f"{path}: missing required key {key!r} (have {sorted(data)})")
    names = np.asarray(data["imgname"]).astype(str).reshape(-1)
    n = len(names)

    kp_conv = _string_key(data, "keypoint_convention", path)
    part = _array(data, "part", path, (-1, 3), n)
    if kp_conv is None:
        if part.shape[1] != SPIN_NUM_JOINTS:
            raise ManifestError(f"{path}: 'part' has {part.shape[1]} joints; without a 'keypoint_convention' key "
                                f"SPIN's {SPIN_NUM_JOINTS}-joint order is expected")
        part, kp_conv = part[:, SPIN24_TO_COCO17], "coco17"
    center = _array(data, "center", path, (2,), n)
    scale = _array(data, "scale", path, (), n)

    j3_conv = _string_key(data, "joints_3d_convention", path)
    joints_3d = has_3d = None
    if "S" in data:
        s = np.asarray(data["S"])
        s = _array(data, "S", path, (-1, s.shape[-1] if s.ndim == 3 else 4), n)
        if s.shape[2] not in (3, 4):
            raise ManifestError(f"{path}: key 'S' must be (N, K, 3) or (N, K, 4), got {s.shape}")
        if j3_conv is None:
            if s.shape[1] != SPIN_NUM_JOINTS:
                raise ManifestError(f"{path}: 'S' has {s.shape[1]} joints; without 'joints_3d_convention' "
                                    f"SPIN's {SPIN_NUM_JOINTS}-joint order is expected")
            s, j3_conv = s[:, SPIN24_TO_H36M17], "h36m17"
        has_3d = (s[..., 3] > 0).all(1) if s.shape[2] == 4 else np.ones(n, bool)
        joints_3d = (s[..., :3].reshape(n, -1), has_3d)

    pose = _array(data, "pose", path, (SMPL_POSE_DIM,), n)
    betas = _array(data, "shape", path, (SMPL_BETAS,), n)
    transl = _array(data, "transl", path, (3,), n)
    flag = _array(data, "has_smpl", path, (), n)
    has_smpl = np.zeros(n, bool) if pose is None or betas is None else (
        np.ones(n, bool) if flag is None else flag > 0)

    focal = _array(data, "focal_length", path, (), n)
    if focal is None and ds.focal_length:
        focal = np.full(n, ds.focal_length)
    pp = _array(data, "principal_point", path, (2,), n)
    width = _array(data, "image_width", path, (), n)
    height = _array(data, "image_height", path, (), n)
    root = image_root(ds.images, path)
    table = columns_to_table(
        n,
        sample_id=[f"{ds.name}/{i}" for i in range(n)],
        dataset=ds.name,
        source=[source_ref(path, f"row {i}") for i in range(n)],
        image_path=[resolve_image_path(nm, root) for nm in names],
        image_width=np.zeros(n, np.int32) if width is None else np.nan_to_num(width).astype(np.int32),
        image_height=np.zeros(n, np.int32) if height is None else np.nan_to_num(height).astype(np.int32),
        bbox=bbox_from_center_scale(center, scale),
        keypoints_2d=part.reshape(n, -1),
        keypoint_convention=kp_conv,
        focal_length=None if focal is None else (focal, np.ones(n, bool)),
        principal_point=None if pp is None else (pp, np.ones(n, bool)),
        joints_3d=joints_3d,
        joints_3d_convention=None if joints_3d is None else (np.array([j3_conv] * n, dtype=object), has_3d),
        smpl_global_orient=None if pose is None else (pose[:, :3], has_smpl),
        smpl_body_pose=None if pose is None else (pose[:, 3:], has_smpl),
        smpl_betas=None if betas is None else (betas, has_smpl),
        smpl_transl=None if transl is None else (transl, has_smpl),
        has_smpl=has_smpl,
        has_3d=np.zeros(n, bool) if has_3d is None else has_3d,
    )
    return AdapterResult(table=table, rejects=empty_rejects(), input_count=n)
