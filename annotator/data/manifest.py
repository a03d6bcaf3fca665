"""Manifest schema, sharded Parquet writer, rejects and reconciliation.

The pipeline reads only manifests: Parquet shards ``part-00000.parquet, ...`` with one row
per person instance (:data:`MANIFEST_SCHEMA`), plus ``_manifest.json`` (counts, shard list,
schema version). Every input instance ends up either as a manifest row or as a row of the
rejects table (:data:`REJECTS_SCHEMA`, reason code + human detail + source); the counts
reconcile (``input_count == num_rows + rejects_count``) and that is checked before
anything is written.

Writing is deterministic (rows sorted by ``sample_id``, no timestamps in the metadata:
the same input gives byte-identical files) and atomic per file (through
:mod:`annotator.storage`, so ``s3://`` works). Shards left over from an earlier, larger
run are removed.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from annotator import storage

SCHEMA_VERSION = "manifest.v1"
REJECTS_SCHEMA_VERSION = "rejects.v1"
MANIFEST_INFO_FILE = "_manifest.json"
SHARD_PATTERN = "part-{:05d}.parquet"
#: Parquet codec: zstd is compact and fast to decode; fixed so output bytes are stable.
PARQUET_COMPRESSION = "zstd"


class ManifestError(ValueError):
    """An annotation file/manifest is unreadable or malformed (message names file and problem)."""


@dataclass(frozen=True)
class Column:
    """One column of a versioned table schema (also rendered to ``schemas/*.json``)."""

    name: str
    type: pa.DataType
    nullable: bool
    unit: str
    description: str


def _fixed(n: int) -> pa.DataType:
    return pa.list_(pa.float32(), n)


MANIFEST_COLUMNS: tuple[Column, ...] = (
    Column("sample_id", pa.string(), False, "", 'Stable id "<dataset>/<annotation id>" (npz: "<dataset>/<row>").'),
    Column("dataset", pa.string(), False, "", "Dataset name from the job config."),
    Column("source", pa.string(), False, "", "Annotation file and row/annotation index (for messages)."),
    Column("image_path", pa.string(), False, "", "Absolute local path or URL of the image."),
    Column("image_width", pa.int32(), False, "px", "Full image width."),
    Column("image_height", pa.int32(), False, "px", "Full image height."),
    Column("bbox", _fixed(4), False, "px", "Person box x, y, w, h in full-image pixels."),
    Column("keypoints_2d", pa.list_(pa.float32()), False, "px",
           "Flattened K*3 (x, y, confidence); confidence 0 = not labelled."),
    Column("visibility", pa.list_(pa.int8()), True, "",
           "Raw per-keypoint visibility flags of the source (COCO v in {0,1,2}; MPII is_visible)."),
    Column("keypoint_convention", pa.string(), False, "", "Joint convention of keypoints_2d (annotator.body.joints)."),
    Column("focal_length", pa.float32(), True, "px", "Known focal length; null = unknown."),
    Column("principal_point", _fixed(2), True, "px", "Known principal point; null = image centre."),
    Column("joints_3d", pa.list_(pa.float32()), True, "m", "Flattened K*3 3D joints in the camera frame."),
    Column("joints_3d_convention", pa.string(), True, "", "Joint convention of joints_3d."),
    Column("smpl_global_orient", _fixed(3), True, "rad", "SMPL root orientation, axis-angle, camera frame."),
    Column("smpl_body_pose", _fixed(69), True, "rad", "SMPL body pose, 23 axis-angle joints."),
    Column("smpl_betas", _fixed(10), True, "", "SMPL shape coefficients."),
    Column("smpl_transl", _fixed(3), True, "m", "SMPL translation in the camera frame."),
    Column("has_smpl", pa.bool_(), False, "", "SMPL parameters are ground truth for this row."),
    Column("has_3d", pa.bool_(), False, "", "joints_3d is ground truth for this row."),
)

REJECTS_COLUMNS: tuple[Column, ...] = (
    Column("sample_id", pa.string(), False, "", "Id the instance would have had in the manifest."),
    Column("dataset", pa.string(), False, "", "Dataset name."),
    Column("reason", pa.string(), False, "", "Short reason code (see REJECT_REASONS)."),
    Column("detail", pa.string(), False, "", "Human-readable explanation."),
    Column("source", pa.string(), False, "", "Annotation file and row/annotation index."),
)

#: Reject reason codes and what they mean.
REJECT_REASONS: dict[str, str] = {
    "corrupt_file": "the instance's own annotation record is unreadable",
    "missing_image": "the image file does not exist",
    "corrupt_image": "the image header cannot be decoded (or the file is empty, not a regular file, or its read timed out)",
    "image_too_large": "the image has more pixels than manifest.max_image_pixels (checked from the header, never decoded)",
    "path_outside_images": "the image path resolves outside the dataset's images root (absolute path, '..', symlink)",
    "image_size_mismatch": "annotated image size differs from the image file",
    "bbox_outside_image": "too little of the person box lies inside the image",
    "too_few_keypoints": "fewer labelled keypoints than manifest.min_visible_keypoints",
    "non_finite": "a NaN/inf in a numeric field",
    "duplicate_id": "sample_id already used by an earlier instance (or the image id it refers to is listed twice)",
    "invalid_value": "a field has an impossible value (negative size, wrong length, ...)",
    "crowd": "COCO crowd region (iscrowd=1), not a single person",
    "not_person": "COCO annotation of a non-keypoint category",
    "unknown_image": "COCO annotation refers to an image id that is not listed",
}


def _schema(columns: tuple[Column, ...], version: str) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in columns],
                     metadata={b"schema_version": version.encode()})


MANIFEST_SCHEMA = _schema(MANIFEST_COLUMNS, SCHEMA_VERSION)
REJECTS_SCHEMA = _schema(REJECTS_COLUMNS, REJECTS_SCHEMA_VERSION)


def schema_document(columns: tuple[Column, ...], version: str) -> dict[str, Any]:
    """The JSON form of a schema, as checked in under ``schemas/<version>.json``."""
    return {
        "schema_version": version,
        "columns": [{"name": c.name, "arrow_type": str(c.type), "nullable": c.nullable,
                     "unit": c.unit, "description": c.description} for c in columns],
    }


@dataclass
class ManifestInfo:
    """What a manifest write produced (also stored as ``_manifest.json``)."""

    manifest_dir: str
    dataset: str
    num_rows: int
    input_count: int
    rejects_count: int
    shards: list[str]
    shard_size: int
    rejects_dir: str | None = None
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("manifest_dir")
        d["rejects_dir"] = storage.redact(d["rejects_dir"]) if d["rejects_dir"] else None
        return d


# ----------------------------------------------------------------------------- tables


def empty_rejects() -> pa.Table:
    return REJECTS_SCHEMA.empty_table()


def rejects_table(sample_ids: list[str], dataset: str, reasons: list[str] | str,
                  details: list[str], sources: list[str]) -> pa.Table:
    """Build a rejects table; ``reasons`` may be one code for all rows."""
    n = len(sample_ids)
    if isinstance(reasons, str):
        reasons = [reasons] * n
    unknown = set(reasons) - set(REJECT_REASONS)
    if unknown:
        raise ValueError(f"unknown reject reason(s) {sorted(unknown)}")
    return pa.table({"sample_id": sample_ids, "dataset": [dataset] * n, "reason": reasons,
                     "detail": details, "source": sources}, schema=REJECTS_SCHEMA)


def _list_array(flat: np.ndarray, width: int, valid: np.ndarray | None, typ: pa.DataType) -> pa.Array:
    """(N, width) array -> Arrow list/fixed-size-list array with nulls where ``~valid``."""
    flat = np.ascontiguousarray(flat).reshape(-1, width)
    n = flat.shape[0]
    value_type = typ.value_type
    values = pa.array(flat.reshape(-1).astype(value_type.to_pandas_dtype(), copy=False), type=value_type)
    mask = None if valid is None else pa.array(~np.asarray(valid, dtype=bool))
    if pa.types.is_fixed_size_list(typ):
        return pa.FixedSizeListArray.from_arrays(values, width, mask=mask)
    if valid is None:
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * width), values)
    # null rows get zero-length slots, so flatten/parent indices stay aligned
    valid = np.asarray(valid, dtype=bool)
    lengths = np.where(valid, width, 0).astype(np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    kept = pa.array(flat[valid].reshape(-1).astype(value_type.to_pandas_dtype(), copy=False), type=value_type)
    return pa.ListArray.from_arrays(offsets, kept, mask=mask)


def columns_to_table(n: int, **cols: Any) -> pa.Table:
    """Build a manifest table from column arrays (vectorised; used by every adapter).

    Scalars are broadcast; list columns take ``(N, width)`` arrays or ``(array, valid)``
    pairs for nullable ones (``None`` = all null). Columns not given are null (nullable
    ones) or an error.
    """
    arrays = []
    for col in MANIFEST_COLUMNS:
        value = cols.pop(col.name, None)
        typ = col.type
        if value is None:
            if not col.nullable:
                raise ValueError(f"columns_to_table: required column {col.name!r} missing")
            arrays.append(pa.nulls(n, typ))
            continue
        valid = None
        if isinstance(value, tuple):
            value, valid = value
        if pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ):
            arr = np.asarray(value)
            width = typ.list_size if pa.types.is_fixed_size_list(typ) else (arr.reshape(n, -1).shape[1] if n else 0)
            arrays.append(_list_array(arr, width, valid, typ))
        elif isinstance(value, (str, bool, int, float, np.generic)):
            arrays.append(pa.array([value] * n, type=typ))
        else:
            mask = None if valid is None else ~np.asarray(valid, dtype=bool)
            arrays.append(pa.array(value if not isinstance(value, np.ndarray) or value.dtype != object
                                   else list(value), type=typ, mask=mask))
    if cols:
        raise ValueError(f"columns_to_table: unknown column(s) {sorted(cols)}")
    return pa.Table.from_arrays(arrays, schema=MANIFEST_SCHEMA)


def conform(table: pa.Table, source: str) -> pa.Table:
    """Check required columns and cast ``table`` to :data:`MANIFEST_SCHEMA` (ManifestError otherwise)."""
    names = set(table.column_names)
    for col in MANIFEST_COLUMNS:
        if col.name not in names and not col.nullable:
            raise ManifestError(f"{storage.redact(source)}: missing required column {col.name!r}")
    n = table.num_rows
    arrays = []
    for col in MANIFEST_COLUMNS:
        if col.name not in names:
            arrays.append(pa.nulls(n, col.type))
            continue
        arr = table.column(col.name)
        if not col.nullable and arr.null_count:
            raise ManifestError(f"{storage.redact(source)}: column {col.name!r} has {arr.null_count} null value(s)")
        try:
            arrays.append(arr.cast(col.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise ManifestError(f"{storage.redact(source)}: column {col.name!r} has type {arr.type}, "
                                f"expected {col.type}: {err}") from None
    return pa.Table.from_arrays(arrays, schema=MANIFEST_SCHEMA)


# ----------------------------------------------------------------------------- writing


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=PARQUET_COMPRESSION)
    return buf.getvalue()


def _write_shards(table: pa.Table, out_dir: str, shard_size: int) -> list[str]:
    """Write ``table`` as deterministic shards; remove stale ``part-*`` shards; return names."""
    n_shards = max(1, -(-table.num_rows // shard_size))
    names = [SHARD_PATTERN.format(i) for i in range(n_shards)]
    storage.makedirs(out_dir)
    for i, name in enumerate(names):
        storage.write_bytes_atomic(storage.join(out_dir, name),
                                   _parquet_bytes(table.slice(i * shard_size, shard_size)))
    keep = set(names)
    for path in storage.listdir(out_dir, ".parquet"):
        base = os.path.basename(path)
        if base.startswith("part-") and base not in keep:
            storage.remove(path)
    return names


def _as_table(rows: pa.Table | Iterable[dict[str, Any]]) -> pa.Table:
    if isinstance(rows, pa.Table):
        return conform(rows, "<table>")
    return pa.Table.from_pylist(list(rows), schema=MANIFEST_SCHEMA)


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    if table.num_rows == 0:
        return table
    return table.take(pc.sort_indices(table, [(k, "ascending") for k in keys]))


def write_manifest(rows: pa.Table | Iterable[dict[str, Any]], out_dir: str, shard_size: int, *,
                   rejects: pa.Table | None = None, rejects_dir: str | None = None,
                   input_count: int | None = None, dataset: str | None = None) -> ManifestInfo:
    """Write manifest rows (table or iterable of row dicts) as sorted, sharded Parquet.

    ``rejects`` go to ``rejects_dir`` (same shard naming). ``input_count`` (number of
    instances read from the source) must equal ``len(rows) + len(rejects)``; it defaults
    to that sum. Writes ``_manifest.json`` last.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    table = _sorted(_as_table(rows), ["sample_id"])
    rejects = empty_rejects() if rejects is None else rejects.cast(REJECTS_SCHEMA)
    if rejects.num_rows and rejects_dir is None:
        raise ValueError("write_manifest: rejects given without rejects_dir")
    total = table.num_rows + rejects.num_rows
    input_count = total if input_count is None else int(input_count)
    if input_count != total:
        raise ManifestError(f"{storage.redact(out_dir)}: counts do not reconcile: {input_count} input instances "
                            f"!= {table.num_rows} manifest rows + {rejects.num_rows} rejects")
    ids = table.column("sample_id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        raise ManifestError(f"{storage.redact(out_dir)}: duplicate sample_id values in manifest rows")
    if dataset is None:
        datasets = pc.unique(table.column("dataset")).to_pylist()
        dataset = datasets[0] if len(datasets) == 1 else ",".join(sorted(datasets))
    by_reason: dict[str, int] = {}
    if rejects.num_rows:
        counts = pc.value_counts(rejects.column("reason")).to_pylist()
        by_reason = {d["values"]: d["counts"] for d in sorted(counts, key=lambda d: d["values"])}
    if rejects_dir is not None:
        _write_shards(_sorted(rejects, ["sample_id", "source"]), rejects_dir, shard_size)
    shards = _write_shards(table, out_dir, shard_size)
    info = ManifestInfo(manifest_dir=out_dir, dataset=dataset, num_rows=table.num_rows, input_count=input_count,
                        rejects_count=rejects.num_rows, shards=shards, shard_size=shard_size,
                        rejects_dir=rejects_dir, rejects_by_reason=by_reason)
    storage.write_json_atomic(storage.join(out_dir, MANIFEST_INFO_FILE), info.to_json())
    return info


# ----------------------------------------------------------------------------- reading


def manifest_shards(manifest_dir: str) -> list[str]:
    """Shard paths of a manifest, from ``_manifest.json`` if present, else the ``part-*`` files."""
    info_path = storage.join(manifest_dir, MANIFEST_INFO_FILE)
    if storage.exists(info_path):
        try:
            names = storage.read_json(info_path)["shards"]
        except (ValueError, KeyError, TypeError) as err:
            raise ManifestError(f"{storage.redact(info_path)}: unreadable manifest info: {err}") from None
        return [storage.join(manifest_dir, n) for n in names]
    return [p for p in storage.listdir(manifest_dir, ".parquet") if os.path.basename(p).startswith("part-")]


def read_parquet_file(path: str, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file (or only ``columns`` of it) through the storage layer
    (ManifestError if unreadable)."""
    fs, p = storage.pyarrow_filesystem(path)
    try:
        return pq.read_table(p, filesystem=fs, columns=columns)
    except (OSError, pa.ArrowInvalid) as err:
        raise ManifestError(f"{storage.redact(path)}: unreadable Parquet file: {err}") from None


def read_manifest(manifest_dir: str) -> pa.Table:
    """All rows of a manifest as one table with :data:`MANIFEST_SCHEMA`."""
    shards = manifest_shards(manifest_dir)
    if not shards:
        raise ManifestError(f"{storage.redact(manifest_dir)}: no manifest shards found")
    tables = [conform(read_parquet_file(p), p) for p in shards]
    return pa.concat_tables(tables)


def read_manifest_info(manifest_dir: str) -> dict[str, Any]:
    """The ``_manifest.json`` of a manifest."""
    return storage.read_json(storage.join(manifest_dir, MANIFEST_INFO_FILE))


def read_rejects(rejects_dir: str) -> pa.Table:
    """All rows of a rejects directory (empty table if there is none)."""
    paths = [p for p in storage.listdir(rejects_dir, ".parquet") if os.path.basename(p).startswith("part-")]
    if not paths:
        return empty_rejects()
    return pa.concat_tables([read_parquet_file(p).cast(REJECTS_SCHEMA) for p in paths])


def write_schema_documents(schemas_dir: str) -> list[str]:
    """Render ``manifest.v1.json`` and ``rejects.v1.json`` (the checked-in schema files)."""
    out = []
    for cols, version in ((MANIFEST_COLUMNS, SCHEMA_VERSION), (REJECTS_COLUMNS, REJECTS_SCHEMA_VERSION)):
        path = storage.join(schemas_dir, f"{version}.json")
        storage.write_bytes_atomic(path, (json.dumps(schema_document(cols, version), indent=2) + "\n").encode())
        out.append(path)
    return out
