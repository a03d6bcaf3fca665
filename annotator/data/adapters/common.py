"""What every dataset adapter shares: the result type, file reading, path and box rules."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from annotator import storage
from annotator.data.manifest import ManifestError

#: MPII/SPIN ``scale`` is the person box size in units of 200 px (``scale = size / 200``).
PIXELS_PER_SCALE_UNIT = 200.0


@dataclass
class AdapterResult:
    """Candidate manifest rows of one annotation source, before the common validation.

    ``table`` has :data:`~annotator.data.manifest.MANIFEST_SCHEMA` (image sizes may be 0 =
    unknown, filled from the image header later); ``rejects`` are instances the adapter
    already refused (crowd, malformed record, ...); ``input_count`` is the number of
    instances found in the source, so ``input_count == len(table) + len(rejects)``.
    """

    table: pa.Table
    rejects: pa.Table
    input_count: int

    def __post_init__(self) -> None:
        if self.input_count != self.table.num_rows + self.rejects.num_rows:
            raise ManifestError(f"adapter counts do not reconcile: {self.input_count} instances != "
                                f"{self.table.num_rows} rows + {self.rejects.num_rows} rejects")


def read_bytes_or_fail(path: str, what: str) -> bytes:
    """Bytes of an annotation file; ManifestError naming the file if it cannot be read."""
    try:
        return storage.read_bytes(path)
    except FileNotFoundError:
        raise ManifestError(f"{storage.redact(path)}: {what} not found") from None
    except (OSError, ValueError) as err:
        raise ManifestError(f"{storage.redact(path)}: cannot read {what}: {err}") from None


def read_json_file(path: str, what: str = "annotation file") -> object:
    """Parse a JSON annotation file; ManifestError naming the file and the parse error."""
    data = read_bytes_or_fail(path, what)
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{storage.redact(path)}: not valid JSON: {err}") from None


def image_root(images: str | None, annotation_path: str) -> str:
    """Directory relative image names resolve against: ``images`` or the annotation's folder."""
    if images:
        return images if storage.is_remote(images) else storage.local_path(images)
    if storage.is_remote(annotation_path):
        return annotation_path.rsplit("/", 1)[0]
    return os.path.dirname(storage.local_path(annotation_path))


def resolve_image_path(name: str, root: str) -> str:
    """Absolute local path or URL of an image named ``name`` in an annotation."""
    if "://" in name or os.path.isabs(name):
        return name
    if storage.is_remote(root):
        return storage.join(root, name)
    return os.path.normpath(os.path.join(root, name))


def bbox_from_center_scale(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """SPIN/MPII ``center`` (N, 2) and ``scale`` (N,) -> square boxes (N, 4) as x, y, w, h.

    ``scale`` is the box side / 200 px (:data:`PIXELS_PER_SCALE_UNIT`); the box is centred
    on ``center``.
    """
    side = np.asarray(scale, dtype=np.float64) * PIXELS_PER_SCALE_UNIT
    center = np.asarray(center, dtype=np.float64).reshape(-1, 2)
    return np.concatenate([center - side[:, None] / 2.0, side[:, None], side[:, None]], axis=1)


def source_ref(path: str, index: str) -> str:
    """``<file>:<index>`` with credentials stripped (the ``source`` column)."""
    return f"{storage.redact(path)}:{index}"
