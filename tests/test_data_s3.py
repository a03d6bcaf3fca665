"""Manifest build, read and crops against an S3 endpoint (moto server): all I/O goes via storage."""
from __future__ import annotations

import numpy as np
import pytest

from annotator import storage
from annotator.config import DatasetConfig, ManifestConfig
from annotator.data import build_manifest, read_manifest, read_rejects
from annotator.data.images import load_crops


@pytest.fixture()
def s3_bucket(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    server = moto_server.ThreadedMotoServer(port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    import boto3

    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bucket")
    storage.configure_s3(endpoint_url=endpoint, region="us-east-1")
    yield "s3://bucket"
    storage.configure_s3()
    server.stop()


def test_coco_manifest_and_crops_on_s3(s3_bucket, real_fixtures):
    for f in sorted((real_fixtures / "coco").iterdir()):
        storage.write_bytes_atomic(f"{s3_bucket}/coco/{f.name}", f.read_bytes())
    ds = DatasetConfig(name="coco", format="coco", role="target", path=f"{s3_bucket}/coco/test_coco.json")
    info = build_manifest(ds, ManifestConfig(shard_size=5), f"{s3_bucket}/run/manifest/coco",
                          f"{s3_bucket}/run/rejects/coco")
    assert (info.num_rows, info.rejects_count, len(info.shards)) == (12, 2, 3)
    rows = read_manifest(f"{s3_bucket}/run/manifest/coco")
    assert rows.num_rows == 12 and rows.column("image_path")[0].as_py().startswith("s3://bucket/coco/")
    assert read_rejects(f"{s3_bucket}/run/rejects/coco").num_rows == 2
    bboxes = np.array(rows.column("bbox").to_pylist())
    crops = load_crops(rows.column("image_path").to_pylist(), bboxes, 64, 1.2)
    assert crops.ok.all() and crops.images.reshape(12, -1).std(1).min() > 5
    # a rerun with a bigger shard size removes the stale shards on S3 too
    build_manifest(ds, ManifestConfig(shard_size=100), f"{s3_bucket}/run/manifest/coco",
                   f"{s3_bucket}/run/rejects/coco")
    names = [p.rsplit("/", 1)[1] for p in storage.listdir(f"{s3_bucket}/run/manifest/coco", ".parquet")]
    assert names == ["part-00000.parquet"]
