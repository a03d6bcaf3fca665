"""Manifest rows -> decoded crops -> the model's batch dict (the one bridge to the network).

Two stages, both vectorised over a batch:

* :func:`decode_batch` runs on CPU Ray Data workers (``map_batches``): reads and crops the
  images of a batch of manifest rows and adds the crop geometry. Rows whose image is
  missing/corrupt get ``ok=False`` and an ``error`` text and are routed to rejects.
* :func:`to_model_batch` runs where the model runs: turns the numpy columns into the
  tensors of the batch contract of :mod:`annotator.model` (bbox info of CLIFF Eq. 5,
  focal, keypoints in the training convention with confidences, 3D/SMPL supervision with
  masks, stored prior predictions with a mask).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from annotator.body.joints import TRAIN_CONVENTION, convert, get_convention
from annotator.config import CropConfig
from annotator.data.images import normalize_images
from annotator.geometry.cameras import bbox_info, default_focal

SMPL_COLUMNS = {
    "smpl_global_orient": 3,
    "smpl_body_pose": 69,
    "smpl_betas": 10,
    "smpl_transl": 3,
}
PRIOR_COLUMNS = {
    "prior_global_orient": 3,
    "prior_body_pose": 69,
    "prior_betas": 10,
}


def stack_list_column(col: Any, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """List column of a numpy batch -> (N, width) float32 array plus a row validity mask.

    Ray Data hands list columns over as an (N, W) array when every row has the same
    length, as an object array of arrays (None for nulls) otherwise, and as a 1-D float
    array of NaN when the whole column is null; all three come out the same way here."""
    n = len(col)
    if isinstance(col, np.ndarray) and col.dtype != object:
        arr = np.array(col, dtype=np.float32).reshape(n, -1)  # a copy: Ray hands over read-only views
        if width is not None and arr.shape[1] != width:  # an all-null column
            return np.zeros((n, width), np.float32), np.zeros(n, dtype=bool)
        valid = np.isfinite(arr).all(axis=1)
        arr[~valid] = 0.0  # null rows (NaN-filled by the manifest reader) are zeros, as below: 0 * NaN in a masked loss is NaN
        return arr, valid
    valid = np.array([v is not None and np.size(v) > 0 for v in col], dtype=bool)
    if width is None:
        width = next((np.size(v) for v, ok in zip(col, valid) if ok), 0)
    out = np.zeros((n, width), dtype=np.float32)
    if valid.any():
        out[valid] = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v, ok in zip(col, valid) if ok])
    valid &= np.isfinite(out).all(axis=1)  # a null fixed-size list read back as NaN values
    out[~valid] = 0.0
    return out, valid


def decode_batch(batch: dict[str, np.ndarray], crop: CropConfig) -> dict[str, np.ndarray]:
    """Ray Data stage: decode + crop the images of a batch of manifest rows."""
    from annotator.data.images import load_crops

    bboxes, _ = stack_list_column(batch["bbox"], 4)
    crops = load_crops(list(batch["image_path"]), bboxes, crop.size, crop.bbox_scale)
    out = dict(batch)
    out["img"] = crops.images  # (N,3,S,S) uint8
    out["center"] = crops.center.astype(np.float32)
    out["box_size"] = crops.box_size.astype(np.float32)
    out["affine"] = crops.affine.astype(np.float32)
    out["ok"] = crops.ok
    out["reason"] = np.array([r or "" for r in crops.reasons], dtype=object)
    out["error"] = np.array([e or "" for e in crops.errors], dtype=object)
    return out


def _keypoints(batch: dict[str, np.ndarray], column: str, conv_column: str, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Flattened per-row keypoints of any convention -> (N, K_train, dims) in TRAIN_CONVENTION.

    Returns the array and a (N, K_train) mask of the joints the row actually has (False for
    null rows and for joints the source convention lacks; those are all zeros). Each row is
    read in its own ``conv_column`` convention, so one batch may mix datasets (COCO's 17,
    MPII's 16 joints, ...): rows are stacked per convention, at that convention's width."""
    col = batch[column]
    n = len(col)
    k_out = len(get_convention(TRAIN_CONVENTION).joint_names)
    out = np.zeros((n, k_out, dims), dtype=np.float32)
    present = np.zeros((n, k_out), dtype=bool)
    convs = np.asarray(batch[conv_column], dtype=object).reshape(n)
    for conv in sorted({c for c in convs if isinstance(c, str) and c}):
        rows = np.nonzero(convs == conv)[0]
        flat, valid = stack_list_column(col[rows], get_convention(conv).num_joints * dims)
        rows = rows[valid]
        if not len(rows):
            continue
        converted, mask = convert(torch.from_numpy(flat[valid].reshape(len(rows), -1, dims)), conv, TRAIN_CONVENTION)
        out[rows] = converted.numpy()
        present[rows] = mask.numpy()
    return out, present


def to_model_batch(batch: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """numpy columns (decoded manifest rows) -> tensors of the model's batch contract."""
    n = len(batch["sample_id"])
    t = lambda a, dt=torch.float32: torch.as_tensor(np.asarray(a), dtype=dt, device=device)  # noqa: E731

    image_size = np.stack([np.asarray(batch["image_width"], np.float32), np.asarray(batch["image_height"], np.float32)], 1)
    focal = np.asarray([np.nan if f is None else f for f in batch["focal_length"]], dtype=np.float32) \
        if "focal_length" in batch else np.full(n, np.nan, np.float32)
    unknown = ~np.isfinite(focal)
    focal[unknown] = default_focal(torch.from_numpy(image_size[unknown, 0]), torch.from_numpy(image_size[unknown, 1])).numpy()
    pp, pp_valid = stack_list_column(batch["principal_point"], 2) if "principal_point" in batch else (np.zeros((n, 2), np.float32), np.zeros(n, bool))
    pp[~pp_valid] = image_size[~pp_valid] / 2.0

    img = normalize_images(np.asarray(batch["img"]), device)
    if img.is_cuda:  # the network is channels_last on CUDA (faster convolutions)
        img = img.contiguous(memory_format=torch.channels_last)
    out: dict[str, torch.Tensor] = {
        "img": img,
        "center": t(batch["center"]),
        "box_size": t(batch["box_size"]),
        "focal": t(focal),
        "principal_point": t(pp),
        "image_size": t(image_size),
        "affine": t(batch["affine"]),
    }
    out["bbox_info"] = bbox_info(out["center"], out["box_size"], out["focal"], out["image_size"], out["principal_point"])
    kp2d, _ = _keypoints(batch, "keypoints_2d", "keypoint_convention", 3)
    out["keypoints_2d"] = t(kp2d)

    if "joints_3d" in batch:  # manifest: (K*3) metres; batch: (K, 4) with a per-joint confidence
        xyz, present = _keypoints(batch, "joints_3d", "joints_3d_convention", 3)
        has3d = present.any(axis=1) & np.asarray(batch.get("has_3d", present.any(axis=1)), dtype=bool)
        conf = (present & has3d[:, None]).astype(np.float32)[..., None]
        out["joints_3d"], out["has_3d"] = t(np.concatenate([xyz, conf], axis=-1)), t(has3d, torch.bool)
    for prefix, cols, flag in (("smpl", SMPL_COLUMNS, "has_smpl"), ("prior", PRIOR_COLUMNS, "has_prior")):
        if next(iter(cols)) not in batch:
            continue
        valid_all = np.ones(n, dtype=bool)
        for col, width in cols.items():
            arr, valid = stack_list_column(batch[col], width)
            out[col] = t(arr)
            valid_all &= valid
        if flag in batch:
            valid_all &= np.asarray(batch[flag], dtype=bool)
        out[flag] = t(valid_all, torch.bool)
    return out
