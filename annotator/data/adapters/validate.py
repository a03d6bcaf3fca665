"""Row checks every adapter's output goes through before it becomes a manifest.

All checks are vectorised over the Arrow columns; the first failing check of a row
decides its reject reason, in this order:

1. ``duplicate_id``  - a ``sample_id`` seen earlier in the input (the first one is kept);
2. ``non_finite``    - NaN/inf in any numeric column;
3. ``invalid_value`` - bbox with w/h <= 0, keypoint lists not a multiple of 3, negative
   confidences, focal length <= 0, negative image size;
4. ``path_outside_images`` - the image path does not resolve (symlinks followed) inside the
   dataset's images root (checked before any file is opened);
5. ``image_too_large`` - the annotated size has more than ``manifest.max_image_pixels``;
6. ``missing_image`` / ``corrupt_image`` / ``image_too_large`` / ``image_size_mismatch`` -
   from the image header (read when ``manifest.check_images`` or when the annotation lacks
   the image size, which is then filled in; the EXIF orientation applied);
7. ``bbox_outside_image`` - less than :data:`MIN_BBOX_INSIDE_FRACTION` of the box area
   lies inside the image;
8. ``too_few_keypoints`` - fewer than ``manifest.min_visible_keypoints`` keypoints with
   confidence > 0.
"""
from __future__ import annotations

import os
import posixpath
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from annotator import storage
from annotator.config import ManifestConfig
from annotator.data.images import ImageReadError, image_sizes
from annotator.data.manifest import MANIFEST_SCHEMA, empty_rejects, rejects_table

#: A person box must overlap the image by at least this share of its area. Truncated
#: people (box partly outside) are normal; a box essentially off-image is an error.
MIN_BBOX_INSIDE_FRACTION = 0.1

_FLOAT_LIST_COLUMNS = ("bbox", "keypoints_2d", "principal_point", "joints_3d", "smpl_global_orient",
                       "smpl_body_pose", "smpl_betas", "smpl_transl")


def _flat(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and row indices of a list column (null rows contribute nothing)."""
    arr = table.column(name).combine_chunks()
    values = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    return values, parents


def _row_any(mask_values: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(parents[mask_values], minlength=n) > 0


def _list_lengths(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(table.column(name)), 0).to_numpy()


def _first_duplicates(ids: np.ndarray) -> np.ndarray:
    """True for every occurrence of an id after its first one."""
    _, first = np.unique(ids, return_index=True)
    dup = np.ones(len(ids), dtype=bool)
    dup[first] = False
    return dup


class _Verdicts:
    """Per-row reject reason/detail; the first reason given to a row wins."""

    def __init__(self, n: int):
        self.reason = np.full(n, None, dtype=object)
        self.detail = np.full(n, None, dtype=object)

    @property
    def alive(self) -> np.ndarray:
        return self.reason == None  # noqa: E711 - elementwise on an object array

    def mark(self, mask: np.ndarray, code: str, text: Callable[[int], str]) -> None:
        rows = np.nonzero(mask & self.alive)[0]
        self.reason[rows] = code
        self.detail[rows] = [text(i) for i in rows]


def _check_non_finite(table: pa.Table, v: _Verdicts) -> None:
    n = table.num_rows
    bad_cols: dict[int, list[str]] = {}
    for name in _FLOAT_LIST_COLUMNS:
        values, parents = _flat(table, name)
        for i in np.nonzero(_row_any(~np.isfinite(values), parents, n))[0]:
            bad_cols.setdefault(i, []).append(name)
    focal = table.column("focal_length")
    focal_bad = ~np.isfinite(focal.to_numpy(zero_copy_only=False).astype(np.float64)) \
        & ~pc.is_null(focal).to_numpy(zero_copy_only=False)
    for i in np.nonzero(focal_bad)[0]:
        bad_cols.setdefault(i, []).append("focal_length")
    mask = np.zeros(n, dtype=bool)
    mask[list(bad_cols)] = True
    v.mark(mask, "non_finite", lambda i: f"NaN/inf in {', '.join(bad_cols[i])}")


def _check_values(table: pa.Table, bbox: np.ndarray, kp: tuple[np.ndarray, ...], v: _Verdicts) -> None:
    """``kp``: keypoint list lengths, flat values, their row indices, confidence-position mask."""
    n = table.num_rows
    kp_len, kp_values, kp_parents, conf_pos = kp
    j3_len = _list_lengths(table, "joints_3d")
    focal = table.column("focal_length").to_numpy(zero_copy_only=False).astype(np.float64)
    width, height = table.column("image_width").to_numpy(), table.column("image_height").to_numpy()
    checks = [
        ((bbox[:, 2] <= 0) | (bbox[:, 3] <= 0), lambda i: f"bbox {bbox[i].round(2).tolist()} has w or h <= 0"),
        ((kp_len % 3 != 0) | (kp_len == 0), lambda i: f"keypoints_2d has {kp_len[i]} values, not K*3"),
        (j3_len % 3 != 0, lambda i: f"joints_3d has {j3_len[i]} values, not K*3"),
        (_row_any(conf_pos & (kp_values < 0), kp_parents, n), lambda i: "keypoints_2d has a negative confidence"),
        (focal <= 0, lambda i: f"focal_length {focal[i]} <= 0"),
        ((width < 0) | (height < 0), lambda i: f"image size {width[i]}x{height[i]} is negative"),
    ]
    for mask, text in checks:
        v.mark(mask, "invalid_value", text)


def inside_root(path: str, root: str) -> bool:
    """True if ``path`` resolves inside the folder ``root`` (local: symlinks followed)."""
    if storage.is_remote(root) or storage.is_remote(path):
        if not (storage.is_remote(root) and storage.is_remote(path)):
            return False
        base = root.rstrip("/")
        scheme, rest = path.split("://", 1)
        norm = scheme + "://" + posixpath.normpath(rest)
        return norm.startswith(base + "/")
    try:
        base = os.path.realpath(storage.local_path(root))
        real = os.path.realpath(storage.local_path(path))
    except (ValueError, OSError):
        return False
    return real.startswith(base.rstrip(os.sep) + os.sep)


def _check_paths(table: pa.Table, root: str, v: _Verdicts) -> None:
    paths = table.column("image_path").to_numpy(zero_copy_only=False)
    outside = np.array([not inside_root(str(p), root) for p in paths], dtype=bool)
    v.mark(outside, "path_outside_images",
           lambda i: f"image {storage.redact(str(paths[i]))} is outside the images root {storage.redact(root)}")


def _check_declared_pixels(table: pa.Table, limit: int, v: _Verdicts) -> None:
    width = table.column("image_width").to_numpy().astype(np.int64)
    height = table.column("image_height").to_numpy().astype(np.int64)
    v.mark(width * height > limit, "image_too_large",
           lambda i: f"annotated image size {width[i]}x{height[i]} = {width[i] * height[i]} pixels "
                     f"> manifest.max_image_pixels={limit}")


def _check_images(table: pa.Table, check_all: bool, v: _Verdicts,
                  max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Header checks of the live rows' images; returns (width, height) with unknown sizes filled."""
    n = table.num_rows
    width = table.column("image_width").to_numpy().astype(np.int64)
    height = table.column("image_height").to_numpy().astype(np.int64)
    paths = table.column("image_path").to_numpy(zero_copy_only=False)
    unknown = (width == 0) | (height == 0)
    need = v.alive & (unknown | check_all)
    if not need.any():
        return width, height
    rows = np.nonzero(need)[0]
    uniq, inv = np.unique(paths[rows], return_inverse=True)  # one header read per distinct image
    results = image_sizes(list(uniq), max_pixels)
    which = np.full(n, -1)
    which[rows] = inv
    codes = np.array([r.reason if isinstance(r, ImageReadError) else "" for r in results], dtype=object)
    row_code = np.full(n, "", dtype=object)
    row_code[rows] = codes[inv]
    for code in ("missing_image", "corrupt_image", "image_too_large"):
        v.mark(row_code == code, code, lambda i: str(results[which[i]]))
    sizes = np.array([(0, 0) if isinstance(r, ImageReadError) else r for r in results], dtype=np.int64)
    hw, hh = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    hw[rows], hh[rows] = sizes.reshape(-1, 2)[inv, 0], sizes.reshape(-1, 2)[inv, 1]
    mismatch = need & ~unknown & (hw > 0) & ((hw != width) | (hh != height))
    v.mark(mismatch, "image_size_mismatch",
           lambda i: f"annotation says {width[i]}x{height[i]}, image {paths[i]} is {hw[i]}x{hh[i]} "
                     f"(as displayed: EXIF orientation applied)")
    fill = need & unknown
    width[fill], height[fill] = hw[fill], hh[fill]
    return width, height


def _check_bbox_inside(bbox: np.ndarray, width: np.ndarray, height: np.ndarray, v: _Verdicts) -> None:
    ix = np.clip(bbox[:, 0] + bbox[:, 2], 0, width) - np.clip(bbox[:, 0], 0, width)
    iy = np.clip(bbox[:, 1] + bbox[:, 3], 0, height) - np.clip(bbox[:, 1], 0, height)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (ix * iy) / (bbox[:, 2] * bbox[:, 3])
    v.mark(inside < MIN_BBOX_INSIDE_FRACTION, "bbox_outside_image",
           lambda i: f"bbox {bbox[i].round(2).tolist()} is {inside[i]:.0%} inside the {width[i]}x{height[i]} "
                     f"image (minimum {MIN_BBOX_INSIDE_FRACTION:.0%})")


def validate_rows(table: pa.Table, mcfg: ManifestConfig, dataset: str,
                  images_root: str | None = None) -> tuple[pa.Table, pa.Table]:
    """Split candidate rows into (manifest rows, rejects); fills unknown image sizes.
    ``images_root``: image paths must resolve inside it (``path_outside_images``)."""
    n = table.num_rows
    if n == 0:
        return table, empty_rejects()
    v = _Verdicts(n)
    ids = table.column("sample_id").to_numpy(zero_copy_only=False)
    v.mark(_first_duplicates(ids), "duplicate_id", lambda i: f"sample_id {ids[i]!r} appears more than once")
    _check_non_finite(table, v)

    bbox = table.column("bbox").combine_chunks().flatten().to_numpy().reshape(n, 4).astype(np.float64)
    kp_len = _list_lengths(table, "keypoints_2d")
    kp_values, kp_parents = _flat(table, "keypoints_2d")
    conf_pos = (np.arange(len(kp_values)) - (np.cumsum(kp_len) - kp_len)[kp_parents]) % 3 == 2  # every 3rd value
    _check_values(table, bbox, (kp_len, kp_values, kp_parents, conf_pos), v)
    if images_root is not None:
        _check_paths(table, images_root, v)
    _check_declared_pixels(table, mcfg.max_image_pixels, v)
    width, height = _check_images(table, mcfg.check_images, v, mcfg.max_image_pixels)
    _check_bbox_inside(bbox, width, height, v)
    labelled = np.bincount(kp_parents[conf_pos & (kp_values > 0)], minlength=n)
    v.mark(labelled < mcfg.min_visible_keypoints, "too_few_keypoints",
           lambda i: f"{labelled[i]} labelled keypoints < manifest.min_visible_keypoints={mcfg.min_visible_keypoints}")

    for name, values in (("image_width", width), ("image_height", height)):
        table = table.set_column(table.schema.get_field_index(name), MANIFEST_SCHEMA.field(name),
                                 pa.array(values.astype(np.int32)))
    keep = v.alive
    rej = np.nonzero(~keep)[0]
    if len(rej) == 0:
        return table, empty_rejects()
    sources = table.column("source").to_numpy(zero_copy_only=False)
    rejects = rejects_table([str(ids[i]) for i in rej], dataset, [str(v.reason[i]) for i in rej],
                            [str(v.detail[i]) for i in rej], [str(sources[i]) for i in rej])
    return table.filter(pa.array(keep)), rejects
