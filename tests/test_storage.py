"""The storage layer on local disk and on a real S3-compatible server (moto)."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotator import storage


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_bucket") + "/prefix"


def test_atomic_write_read_list_remove(root):
    p = storage.join(root, "a", "x.json")
    storage.write_json_atomic(p, {"k": [1, 2]})
    storage.write_bytes_atomic(storage.join(root, "a", "y.bin"), b"\x00\x01")
    assert storage.exists(p) and storage.read_json(p) == {"k": [1, 2]}
    assert [n.rsplit("/", 1)[1] for n in storage.listdir(storage.join(root, "a"))] == ["x.json", "y.bin"]
    assert storage.listdir(storage.join(root, "a"), ".bin")[0].endswith("a/y.bin")
    storage.remove(p)
    assert not storage.exists(p)
    assert storage.listdir(storage.join(root, "missing")) == []


def test_parquet_through_pyarrow_filesystem(root):
    table = pa.table({"sample_id": ["a", "b"], "v": [1.0, 2.0]})
    path = storage.join(root, "t", "part-00000.parquet")
    fs, p = storage.pyarrow_filesystem(path)
    storage.makedirs(storage.join(root, "t"))
    pq.write_table(table, p, filesystem=fs)
    assert pq.read_table(p, filesystem=fs).equals(table)


def test_no_partial_files_left_locally(tmp_path):
    p = str(tmp_path / "d" / "f.bin")
    storage.write_bytes_atomic(p, b"abc")
    assert sorted(x.name for x in (tmp_path / "d").iterdir()) == ["f.bin"]


def test_redact_hides_credentials(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SuperSecret123")
    msg = storage.redact("s3://AKIA:pw@bucket/key?token=abc failed with SuperSecret123")
    assert "SuperSecret123" not in msg and "pw@" not in msg and "token=***" in msg and "abc" not in msg
