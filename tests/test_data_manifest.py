"""Manifest schema, deterministic sharded writing, reconciliation, reading errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotator.data.manifest import (MANIFEST_COLUMNS, MANIFEST_SCHEMA, REJECTS_COLUMNS, REJECTS_SCHEMA_VERSION,
                                     SCHEMA_VERSION, ManifestError, columns_to_table, manifest_shards, read_manifest,
                                     rejects_table, schema_document, write_manifest)

ROOT = Path(__file__).resolve().parents[1]


def _rows(n: int, dataset: str = "toy") -> pa.Table:
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 100, (n, 17, 2)), np.ones((n, 17, 1))], -1)
    return columns_to_table(
        n, sample_id=[f"{dataset}/{i}" for i in rng.permutation(n)], dataset=dataset,
        source=[f"f.json:[{i}]" for i in range(n)], image_path=[f"/img/{i}.jpg" for i in range(n)],
        image_width=np.full(n, 640, np.int32), image_height=np.full(n, 480, np.int32),
        bbox=rng.uniform(1, 100, (n, 4)), keypoints_2d=kp.reshape(n, -1), keypoint_convention="coco17",
        focal_length=(np.full(n, 1000.0), np.arange(n) % 2 == 0), has_smpl=False, has_3d=False)


def test_checked_in_schema_files_match_code():
    for cols, version in ((MANIFEST_COLUMNS, SCHEMA_VERSION), (REJECTS_COLUMNS, REJECTS_SCHEMA_VERSION)):
        on_disk = json.loads((ROOT / "schemas" / f"{version}.json").read_text())
        assert on_disk == schema_document(cols, version)
    assert MANIFEST_SCHEMA.metadata[b"schema_version"] == b"manifest.v1"
    assert str(MANIFEST_SCHEMA.field("bbox").type) == "fixed_size_list<item: float>[4]"


def test_shards_sorted_deterministic_and_stale_removed(tmp_path):
    table = _rows(25)
    out = str(tmp_path / "m")
    info = write_manifest(table, out, shard_size=10)
    assert info.shards == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.read_metadata(f"{out}/{s}").num_rows for s in info.shards] == [10, 10, 5]
    first = {s: (tmp_path / "m" / s).read_bytes() for s in info.shards}
    back = read_manifest(out)
    ids = back.column("sample_id").to_pylist()
    assert ids == sorted(ids) and len(ids) == 25
    assert back.column("focal_length").null_count == 12
    assert pq.read_schema(f"{out}/part-00000.parquet").metadata[b"schema_version"] == b"manifest.v1"
    # same input (in another order) -> byte-identical shards
    write_manifest(table.take(np.arange(24, -1, -1)), out, shard_size=10)
    assert {s: (tmp_path / "m" / s).read_bytes() for s in info.shards} == first
    # a smaller rerun removes the stale third shard
    info2 = write_manifest(table, out, shard_size=20)
    assert sorted(p.name for p in (tmp_path / "m").glob("part-*")) == ["part-00000.parquet", "part-00001.parquet"]
    assert manifest_shards(out) == [f"{out}/{s}" for s in info2.shards]
    meta = json.loads((tmp_path / "m" / "_manifest.json").read_text())
    assert meta["num_rows"] == 25 and meta["input_count"] == 25 and meta["schema_version"] == "manifest.v1"


def test_row_dicts_and_rejects_reconcile(tmp_path):
    rows = _rows(3).to_pylist()
    rej = rejects_table(["toy/x"], "toy", "crowd", ["iscrowd=1"], ["f.json:[9]"])
    info = write_manifest(rows, str(tmp_path / "m"), 5, rejects=rej, rejects_dir=str(tmp_path / "r"), input_count=4)
    assert (info.num_rows, info.rejects_count, info.rejects_by_reason) == (3, 1, {"crowd": 1})
    assert pq.read_table(tmp_path / "r" / "part-00000.parquet").column("reason").to_pylist() == ["crowd"]
    with pytest.raises(ManifestError, match="do not reconcile: 5 input instances != 3 manifest rows \\+ 1 rejects"):
        write_manifest(rows, str(tmp_path / "m2"), 5, rejects=rej, rejects_dir=str(tmp_path / "r2"), input_count=5)
    with pytest.raises(ManifestError, match="duplicate sample_id"):
        write_manifest(rows + rows[:1], str(tmp_path / "m3"), 5)
    with pytest.raises(ValueError, match="unknown reject reason"):
        rejects_table(["a"], "toy", "because", ["x"], ["y"])


def test_read_manifest_names_file_and_missing_column(tmp_path):
    table = _rows(2).drop_columns(["bbox"])
    pq.write_table(table, tmp_path / "part-00000.parquet")
    with pytest.raises(ManifestError, match=r"part-00000\.parquet: missing required column 'bbox'"):
        read_manifest(str(tmp_path))
    (tmp_path / "part-00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(ManifestError, match=r"part-00000\.parquet: unreadable Parquet"):
        read_manifest(str(tmp_path))
    with pytest.raises(ManifestError, match="no manifest shards"):
        read_manifest(str(tmp_path / "empty"))
