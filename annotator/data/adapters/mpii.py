"""MPII Human Pose -> candidate manifest rows, from the common JSON form or the official ``.mat``.

Both give 16 joints in MPII order (``mpii16``: r-ankle, r-knee, r-hip, l-hip, l-knee,
l-ankle, pelvis, thorax, upper-neck, head-top, r-wrist, r-elbow, r-shoulder, l-shoulder,
l-elbow, l-wrist), a person centre (``objpos``/``center``) and ``scale`` = person height
/ 200 px. ``sample_id = "<dataset>/<image name>/<index of the person within the image>"``.
MPII has no image sizes: they come from the image headers.

Bounding box rule (:func:`mpii_bbox`), MPII has no person boxes:
the tight box of the labelled joints, widened by :data:`JOINT_BOX_PADDING` of its extent on
each side (joints are inside the body outline: the box must also hold hands, feet and
the shoulders' width), united with the vertical extent ``center_y +- 100 * scale`` of the
annotated person height. Without labelled joints the box is the ``200 * scale`` square
on the centre (the SPIN convention).

JSON form (e.g. the OpenMMLab ``mpii_*.json``): a list of ``{image, center, scale,
joints[16][2], joints_vis[16]}``; ``joints_vis`` > 0 marks a labelled joint (confidence 1).

Official release ``mpii_human_pose_v1_u12_1.mat``: ``RELEASE.annolist(i).image.name``,
``annorect(j).annopoints.point(k).{x, y, id, is_visible}``, ``objpos.{x, y}``, ``scale``.
Every ``annorect`` is an instance; rects without ``annopoints`` (the test split, and
unannotated people) become ``too_few_keypoints`` rejects. The raw ``is_visible`` goes to
the ``visibility`` column (1 visible, 0 occluded, -1 not stated or joint not labelled).
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

from annotator.config import DatasetConfig, ManifestConfig
from annotator.data.adapters.common import (PIXELS_PER_SCALE_UNIT, AdapterResult, bbox_from_center_scale,
                                            image_root, read_bytes_or_fail, read_json_file, resolve_image_path,
                                            source_ref)
from annotator.data.manifest import ManifestError, columns_to_table, empty_rejects, rejects_table

CONVENTION = "mpii16"
NUM_JOINTS = 16
#: Padding of the joint box on each side, as a share of its width/height.
JOINT_BOX_PADDING = 0.15
#: ``visibility`` value for a joint whose ``is_visible`` is absent or that is not labelled.
VISIBILITY_UNKNOWN = -1


def mpii_bbox(joints: np.ndarray, labelled: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Person boxes (N, 4) x, y, w, h from joints (N, 16, 2), labelled mask, centre (N, 2), scale (N,)."""
    big = np.finfo(np.float64).max
    x, y = joints[..., 0], joints[..., 1]
    x0, x1 = np.where(labelled, x, big).min(1), np.where(labelled, x, -big).max(1)
    y0, y1 = np.where(labelled, y, big).min(1), np.where(labelled, y, -big).max(1)
    has = labelled.any(1)
    pad_x, pad_y = JOINT_BOX_PADDING * (x1 - x0), JOINT_BOX_PADDING * (y1 - y0)
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y
    half = scale * PIXELS_PER_SCALE_UNIT / 2.0
    scale_ok = np.isfinite(half) & (half > 0)
    y0 = np.where(scale_ok, np.minimum(y0, center[:, 1] - half), y0)
    y1 = np.where(scale_ok, np.maximum(y1, center[:, 1] + half), y1)
    box = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    square = bbox_from_center_scale(center, scale)
    return np.where(has[:, None], box, square)


def _table(ds: DatasetConfig, path: str, ids: list[str], sources: list[str], names: list[str],
           joints: np.ndarray, labelled: np.ndarray, center: np.ndarray, scale: np.ndarray,
           visibility: np.ndarray | None):
    n = len(ids)
    root = image_root(ds.images, path)
    kp = np.concatenate([joints, labelled[..., None].astype(np.float64)], axis=-1)
    focal = (np.full(n, ds.focal_length), np.ones(n, bool)) if ds.focal_length else None
    return columns_to_table(
        n, sample_id=ids, dataset=ds.name, source=sources,
        image_path=[resolve_image_path(nm, root) for nm in names],
        image_width=np.zeros(n, np.int32), image_height=np.zeros(n, np.int32),
        bbox=mpii_bbox(joints, labelled, center, scale),
        keypoints_2d=kp.reshape(n, -1),
        visibility=None if visibility is None else (visibility.astype(np.int8), np.ones(n, bool)),
        keypoint_convention=CONVENTION, focal_length=focal, has_smpl=False, has_3d=False,
    )


# ----------------------------------------------------------------------------- JSON


def _json_entry(entry: Any) -> tuple[str, str] | None:
    """(reason, detail) why a JSON entry is unusable, or None."""
    if not isinstance(entry, dict):
        return "corrupt_file", "entry is not an object"
    for key in ("image", "center", "scale", "joints", "joints_vis"):
        if key not in entry:
            return "corrupt_file", f"missing key {key!r}"
    try:
        j = np.asarray(entry["joints"], dtype=np.float64)
        v = np.asarray(entry["joints_vis"], dtype=np.float64)
        c = np.asarray(entry["center"], dtype=np.float64)
        float(entry["scale"])
    except (TypeError, ValueError):
        return "invalid_value", "center/scale/joints/joints_vis are not numeric"
    if j.shape != (NUM_JOINTS, 2) or v.shape != (NUM_JOINTS,) or c.shape != (2,):
        return "invalid_value", (f"expected joints (16, 2), joints_vis (16,), center (2,); "
                                 f"got {j.shape}, {v.shape}, {c.shape}")
    return _scale_problem(float(entry["scale"]))


def _scale_problem(scale: float) -> tuple[str, str] | None:
    """A person height ``scale`` of 0 or less makes no box (NaN is left to the non-finite check)."""
    if scale <= 0:
        return "invalid_value", f"scale {scale:g} <= 0 (person height / 200 px must be positive)"
    return None


def read_mpii_json(ds: DatasetConfig, mcfg: ManifestConfig) -> AdapterResult:
    """Read the MPII JSON form (list of per-person records)."""
    path = ds.path
    data = read_json_file(path, "MPII annotation file")
    if not isinstance(data, list):
        raise ManifestError(f"{path}: MPII JSON must be a list of person records, got {type(data).__name__}")
    seen: dict[str, int] = {}
    good: list[tuple[str, str, dict]] = []
    rej: list[tuple[str, str, str, str]] = []
    for i, entry in enumerate(data):
        name = str(entry["image"]) if isinstance(entry, dict) and "image" in entry else None
        if name is None:
            sid = f"{ds.name}/[{i}]"
        else:
            sid = f"{ds.name}/{name}/{seen.get(name, 0)}"
            seen[name] = seen.get(name, 0) + 1
        src = source_ref(path, f"[{i}]")
        problem = _json_entry(entry)
        if problem is None:
            good.append((sid, src, entry))
        else:
            rej.append((sid, *problem, src))
    n = len(good)
    joints = np.array([e["joints"] for *_, e in good], dtype=np.float64).reshape(n, NUM_JOINTS, 2)
    labelled = np.array([e["joints_vis"] for *_, e in good], dtype=np.float64).reshape(n, NUM_JOINTS) > 0
    center = np.array([e["center"] for *_, e in good], dtype=np.float64).reshape(n, 2)
    scale = np.array([e["scale"] for *_, e in good], dtype=np.float64).reshape(n)
    table = _table(ds, path, [g[0] for g in good], [g[1] for g in good], [str(e["image"]) for *_, e in good],
                   joints, labelled, center, scale, None)
    rejects = rejects_table([r[0] for r in rej], ds.name, [r[1] for r in rej], [r[2] for r in rej],
                            [r[3] for r in rej]) if rej else empty_rejects()
    return AdapterResult(table=table, rejects=rejects, input_count=len(data))


# ----------------------------------------------------------------------------- .mat


def _items(value: Any) -> list:
    """A MATLAB struct array / cell / single struct / empty as a Python list."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel()) if value.size else []
    return [value]


def _num(value: Any) -> float:
    """A MATLAB scalar (possibly empty array or string) as float; NaN if absent."""
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return float("nan")
    return float(arr[0]) if arr.size else float("nan")


def _rect_points(rect: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(joints (16, 2), labelled (16,), visibility (16,)) of one annorect, None if no points."""
    points = _items(getattr(getattr(rect, "annopoints", None), "point", None))
    if not points:
        return None
    joints = np.zeros((NUM_JOINTS, 2))
    labelled = np.zeros(NUM_JOINTS, dtype=bool)
    vis = np.full(NUM_JOINTS, VISIBILITY_UNKNOWN, dtype=np.int8)
    for p in points:
        jid = _num(getattr(p, "id", None))
        if not np.isfinite(jid) or not 0 <= jid < NUM_JOINTS:
            raise ValueError(f"joint id {getattr(p, 'id', None)!r} is not in 0..15")
        k = int(jid)
        joints[k] = (_num(getattr(p, "x", None)), _num(getattr(p, "y", None)))
        labelled[k] = True
        v = _num(getattr(p, "is_visible", None))
        vis[k] = int(v) if np.isfinite(v) else VISIBILITY_UNKNOWN
    return joints, labelled, vis


def read_mpii_mat(ds: DatasetConfig, mcfg: ManifestConfig) -> AdapterResult:
    """Read the official MPII release ``.mat`` (``RELEASE.annolist``)."""
    import scipy.io

    path = ds.path
    raw = read_bytes_or_fail(path, "MPII .mat file")
    try:
        mat = scipy.io.loadmat(io.BytesIO(raw), struct_as_record=False, squeeze_me=True)
    except (ValueError, TypeError, OSError, NotImplementedError) as err:
        raise ManifestError(f"{path}: not a readable MATLAB file: {err}") from None
    release = mat.get("RELEASE")
    annolist = getattr(release, "annolist", None)
    if annolist is None:
        raise ManifestError(f"{path}: no RELEASE.annolist (not the MPII release layout)")

    ids, sources, names, joints, labelled, vis, center, scale = [], [], [], [], [], [], [], []
    rej: list[tuple[str, str, str, str]] = []
    count = 0
    for i, ann in enumerate(_items(annolist)):
        name = getattr(getattr(ann, "image", None), "name", None)
        for j, rect in enumerate(_items(getattr(ann, "annorect", None))):
            count += 1
            sid = f"{ds.name}/{name}/{j}" if isinstance(name, str) else f"{ds.name}/annolist({i + 1})/{j}"
            src = source_ref(path, f"annolist({i + 1}).annorect({j + 1})")
            if not isinstance(name, str):
                rej.append((sid, "corrupt_file", "annolist entry has no image.name", src))
                continue
            try:
                pts = _rect_points(rect)
            except ValueError as err:
                rej.append((sid, "invalid_value", str(err), src))
                continue
            if pts is None:
                rej.append((sid, "too_few_keypoints", "no annopoints (unannotated person / test split)", src))
                continue
            if (bad_scale := _scale_problem(_num(getattr(rect, "scale", None)))) is not None:
                rej.append((sid, *bad_scale, src))
                continue
            objpos = getattr(rect, "objpos", None)
            ids.append(sid)
            sources.append(src)
            names.append(name)
            joints.append(pts[0])
            labelled.append(pts[1])
            vis.append(pts[2])
            center.append((_num(getattr(objpos, "x", None)), _num(getattr(objpos, "y", None))))
            scale.append(_num(getattr(rect, "scale", None)))
    n = len(ids)
    center_a = np.array(center, dtype=np.float64).reshape(n, 2)
    scale_a = np.array(scale, dtype=np.float64).reshape(n)
    joints_a = np.array(joints, dtype=np.float64).reshape(n, NUM_JOINTS, 2)
    labelled_a = np.array(labelled, dtype=bool).reshape(n, NUM_JOINTS)
    # A missing objpos falls back to the centre of the labelled joints (box rule needs a centre).
    lab_mean = np.where(labelled_a[..., None], joints_a, 0).sum(1) / np.maximum(labelled_a.sum(1), 1)[:, None]
    center_a = np.where(np.isfinite(center_a), center_a, lab_mean)
    table = _table(ds, path, ids, sources, names, joints_a, labelled_a, center_a, scale_a,
                   np.array(vis, dtype=np.int8).reshape(n, NUM_JOINTS))
    rejects = rejects_table([r[0] for r in rej], ds.name, [r[1] for r in rej], [r[2] for r in rej],
                            [r[3] for r in rej]) if rej else empty_rejects()
    return AdapterResult(table=table, rejects=rejects, input_count=count)
