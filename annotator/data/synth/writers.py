"""Byte-deterministic writers for the synthetic world's real-format outputs.

* JPEG: Pillow, fixed quality and chroma subsampling, no EXIF/ICC - the same pixels give
  the same bytes.
* COCO keypoints JSON: sorted keys, compact separators, coordinates rounded to
  :data:`COORD_DECIMALS`.
* SPIN-style ``.npz``: written as a zip by hand because ``numpy.savez`` stamps every
  member with the current time; members here carry a fixed timestamp.
* Ground-truth Parquet: built directly from Arrow arrays (no pandas metadata), so the
  file depends only on the data and the pyarrow version.

All writes go through :mod:`annotator.storage` (local paths or ``s3://``).
"""
from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from annotator import storage
from annotator.body.joints import COCO17_SKELETON

JPEG_QUALITY = 92
JPEG_SUBSAMPLING = 2
"""Pillow's code for 4:2:0 chroma subsampling (the common camera setting)."""
COORD_DECIMALS = 2
"""2D coordinates and boxes in the COCO file are rounded to 0.01 px."""
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""The fixed member timestamp of the npz zip (the earliest a zip can store)."""



def encode_jpeg(image: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 RGB -> JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="JPEG", quality=JPEG_QUALITY,
                                             subsampling=JPEG_SUBSAMPLING, optimize=False)
    return buf.getvalue()


def coco_document(images: list[dict], annotations: list[dict], keypoint_names: list[str],
                  description: str) -> dict[str, Any]:
    """A COCO person-keypoints document (``info``/``licenses``/``images``/``annotations``/``categories``)."""
    return {
        "info": {"description": description, "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{
            "id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(keypoint_names), "skeleton": COCO17_SKELETON,
        }],
    }


def json_bytes(doc: Any) -> bytes:
    """Deterministic JSON: sorted keys, compact separators."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A ``numpy.load``-able npz whose bytes depend only on ``arrays`` (sorted members)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            arr = np.asarray(arrays[key])
            if arr.dtype == object:
                raise TypeError(f"npz key {key!r}: object arrays are not allowed (use a fixed-width dtype)")
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def fixed_list(values: np.ndarray, width: int, typ: pa.DataType = pa.float64()) -> pa.Array:
    """``(N, width)`` numbers -> an Arrow ``fixed_size_list<typ>[width]`` column."""
    flat = np.ascontiguousarray(np.asarray(values).reshape(-1, width)).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=typ), width)


def write_bytes(path: str, data: bytes) -> None:
    storage.write_bytes_atomic(path, data)
