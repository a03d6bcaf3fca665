"""Decoded crops, made once per (dataset, crop settings), beside the manifest.

Training reads the images of its datasets every epoch; decoding and cropping them again
each time cost a third to a half of the training step. The cache holds, per manifest
shard, one Parquet file with the *context crop* of every row (uint8, CHW):
``cache_context`` x the network crop's side at ``cache_context`` x its resolution, so
augmentation (:mod:`annotator.data.augment`) can jitter, roll and mirror the box by
resampling the cached pixels on the worker's device.

Layout: ``<run>/crops/<dataset>/<key>/part-NNNNN.parquet`` with ``key`` a hash of the crop
settings and of the manifest shards' bytes, so a change of either makes a new key (and the
old folders are removed); each shard file is written atomically, so an interrupted build
resumes with the missing shards. An image changed in place without a new manifest is not
detected: the manifest step is what reads a dataset.

Columns: ``sample_id``, ``img`` (fixed-size binary, 3 x R x R bytes, R = round(size x
context)), ``center`` (2), ``box_size`` (the network crop's side in image px), ``affine``
(6: image px -> context-crop px), ``ok``, ``reason``, ``error`` (decode failures).

Size: ``3 R^2`` bytes per row before Parquet's compression (zstd), i.e. 19.2 kB at 64 px
and 235 kB at 224 px with the default context of 1.25.
"""
from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from annotator import storage
from annotator.config import CropConfig

CACHE_VERSION = 1
COMPRESSION = "zstd"


def context_resolution(crop: CropConfig) -> int:
    """Side in px of the cached context crop."""
    return int(round(crop.size * crop.cache_context))


def bytes_per_crop(crop: CropConfig) -> int:
    return 3 * context_resolution(crop) ** 2


def cache_key(crop: CropConfig, manifest_shards: list[str]) -> str:
    """Hash of the crop settings and the manifest shards' content."""
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "size": crop.size, "bbox_scale": crop.bbox_scale,
                                   "context": crop.cache_context}, sort_keys=True).encode())
    for shard in manifest_shards:
        h.update(os.path.basename(shard).encode())
        h.update(hashlib.sha256(storage.read_bytes(shard)).digest())
    return h.hexdigest()[:16]


def cache_shard_path(cache_dir: str, manifest_shard: str) -> str:
    return storage.join(cache_dir, os.path.basename(manifest_shard))


def build_shard(manifest_shard: str, out_path: str, crop: CropConfig) -> int:
    """Decode and crop every row of one manifest shard into ``out_path``; returns its rows."""
    from annotator.data.batching import stack_list_column
    from annotator.data.images import load_crops
    from annotator.data.manifest import read_parquet_file

    t = read_parquet_file(manifest_shard, ["sample_id", "image_path", "bbox"])
    bboxes, _ = stack_list_column(t.column("bbox").to_numpy(zero_copy_only=False), 4)
    res = context_resolution(crop)
    crops = load_crops(t.column("image_path").to_pylist(), bboxes, res, crop.bbox_scale * crop.cache_context)
    n = t.num_rows
    imgs = np.ascontiguousarray(crops.images).reshape(n, -1)
    table = pa.table({
        "sample_id": t.column("sample_id"),
        "img": pa.array([row.tobytes() for row in imgs], type=pa.binary(imgs.shape[1])),
        "center": pa.FixedSizeListArray.from_arrays(pa.array(crops.center.reshape(-1), pa.float32()), 2),
        "box_size": pa.array(crops.box_size / crop.cache_context, pa.float32()),
        "affine": pa.FixedSizeListArray.from_arrays(pa.array(crops.affine.reshape(-1), pa.float32()), 6),
        "ok": pa.array(crops.ok),
        "reason": pa.array([r or "" for r in crops.reasons], pa.string()),
        "error": pa.array([e or "" for e in crops.errors], pa.string()),
    })
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=COMPRESSION)
    storage.write_bytes_atomic(out_path, sink.getvalue())
    return n


def read_shard(path: str, crop: CropConfig) -> dict[str, np.ndarray]:
    """One cache shard as numpy columns: ``img`` (N, 3, R, R) uint8, ``affine`` (N, 2, 3), ..."""
    from annotator.data.manifest import read_parquet_file

    t = read_parquet_file(path)
    n, res = t.num_rows, context_resolution(crop)
    img_col = t.column("img").combine_chunks()
    raw = np.frombuffer(img_col.buffers()[1], dtype=np.uint8)[img_col.offset * 3 * res * res:]
    return {
        "sample_id": np.asarray(t.column("sample_id").to_pylist(), dtype=object),
        "img": raw[: n * 3 * res * res].reshape(n, 3, res, res),
        "center": np.asarray(t.column("center").to_pylist(), np.float32).reshape(n, 2),
        "box_size": t.column("box_size").to_numpy().astype(np.float32),
        "affine": np.asarray(t.column("affine").to_pylist(), np.float32).reshape(n, 2, 3),
        "ok": t.column("ok").to_numpy(zero_copy_only=False).astype(bool),
        "reason": np.asarray(t.column("reason").to_pylist(), dtype=object),
        "error": np.asarray(t.column("error").to_pylist(), dtype=object),
    }


def stale_caches(dataset_dir: str, key: str) -> list[str]:
    """Cache folders of a dataset other than the current ``key`` (to be removed)."""
    if not storage.exists(dataset_dir):
        return []
    fs, root = storage.filesystem(dataset_dir)
    out = []
    for p in fs.ls(root, detail=False):
        if os.path.basename(p.rstrip("/")) != key:
            out.append(storage.join(dataset_dir, os.path.basename(p.rstrip("/"))))
    return out


__all__ = ["cache_key", "build_shard", "read_shard", "cache_shard_path", "stale_caches", "context_resolution",
           "bytes_per_crop"]
