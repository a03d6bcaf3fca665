"""The project's own Parquet form: a directory (or one file) of manifest-schema Parquet.

Every file is validated against :data:`~annotator.data.manifest.MANIFEST_SCHEMA`: a
missing required column or an incompatible type raises ManifestError naming the file and
the column. Relative ``image_path`` values resolve against ``datasets[].images`` (else the
Parquet directory). Rows then go through the same checks as every other source.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from annotator import storage
from annotator.config import DatasetConfig, ManifestConfig
from annotator.data.adapters.common import AdapterResult, image_root, resolve_image_path
from annotator.data.manifest import MANIFEST_SCHEMA, ManifestError, conform, empty_rejects, read_parquet_file


def parquet_files(path: str) -> list[str]:
    """The Parquet files of ``path`` (a ``.parquet`` file or a directory of them), sorted."""
    if path.endswith(".parquet"):
        return [path]
    files = storage.listdir(path, ".parquet")
    if not files:
        raise ManifestError(f"{storage.redact(path)}: no .parquet files found")
    return files


def read_parquet(ds: DatasetConfig, mcfg: ManifestConfig) -> AdapterResult:
    """Read and validate manifest-schema Parquet files."""
    files = parquet_files(ds.path)
    tables = [conform(read_parquet_file(f), f) for f in files]
    table = pa.concat_tables(tables) if tables else MANIFEST_SCHEMA.empty_table()
    anchor = ds.path if ds.path.endswith(".parquet") else storage.join(ds.path, "x.parquet")
    root = image_root(ds.images, anchor)
    paths = np.asarray(table.column("image_path").to_pylist(), dtype=object)
    resolved = pa.array([resolve_image_path(p, root) for p in paths], type=pa.string())
    table = table.set_column(table.schema.get_field_index("image_path"), MANIFEST_SCHEMA.field("image_path"), resolved)
    return AdapterResult(table=table, rejects=empty_rejects(), input_count=table.num_rows)
