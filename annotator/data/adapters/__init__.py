"""Dataset adapters: annotation sources in their published formats -> manifests.

:func:`build_manifest` is what the pipeline calls per dataset: it dispatches on
``datasets[].format`` to an adapter (candidate rows + adapter rejects), runs the common
row checks (:mod:`annotator.data.adapters.validate`) and writes the sharded manifest and
the rejects table with reconciled counts.
"""
from __future__ import annotations

from typing import Callable

import pyarrow as pa

from annotator.config import DatasetConfig, ManifestConfig
from annotator.data.adapters.coco import read_coco
from annotator.data.adapters.common import AdapterResult, image_root
from annotator.data.adapters.mpii import read_mpii_json, read_mpii_mat
from annotator.data.adapters.parquet import read_parquet
from annotator.data.adapters.spin_npz import read_spin_npz
from annotator.data.adapters.validate import validate_rows
from annotator.data.manifest import ManifestError, ManifestInfo, write_manifest

ADAPTERS: dict[str, Callable[[DatasetConfig, ManifestConfig], AdapterResult]] = {
    "coco": read_coco,
    "mpii_json": read_mpii_json,
    "mpii_mat": read_mpii_mat,
    "spin_npz": read_spin_npz,
    "parquet": read_parquet,
}


def read_source(ds: DatasetConfig, mcfg: ManifestConfig) -> AdapterResult:
    """Candidate rows of one dataset (before validation)."""
    if ds.format not in ADAPTERS:
        raise ManifestError(f"datasets[{ds.name}].format {ds.format!r}: no adapter (synth data is written by the "
                            f"synth step as {sorted(ADAPTERS)} files first)")
    if not ds.path:
        raise ManifestError(f"datasets[{ds.name}].path is required for format {ds.format!r}")
    return ADAPTERS[ds.format](ds, mcfg)


def build_manifest(ds: DatasetConfig, mcfg: ManifestConfig, manifest_dir: str, rejects_dir: str) -> ManifestInfo:
    """Read, check and write one dataset: ``manifest_dir/part-*.parquet`` + ``rejects_dir/part-*.parquet``.

    Every input instance is either a manifest row or a reject; the counts are checked
    and recorded in ``manifest_dir/_manifest.json``. Only an unreadable/malformed
    annotation file raises (:class:`ManifestError`).
    """
    src = read_source(ds, mcfg)
    # Image names must stay inside the images root; a Parquet source without ``images`` holds
    # resolved paths of an earlier manifest (wherever that one's images were).
    root = image_root(ds.images, ds.path) if ds.images or ds.format != "parquet" else None
    rows, rejected = validate_rows(src.table, mcfg, ds.name, images_root=root)
    rejects = pa.concat_tables([src.rejects, rejected])
    return write_manifest(rows, manifest_dir, mcfg.shard_size, rejects=rejects, rejects_dir=rejects_dir,
                          input_count=src.input_count, dataset=ds.name)


__all__ = ["ADAPTERS", "AdapterResult", "build_manifest", "read_source"]
