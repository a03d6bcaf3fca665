"""The streamed COCO reader gives the same manifest as parsing the whole file (issue 13)."""
from __future__ import annotations

import json

import pytest


def _rows(ds, tmp, name, monkeypatch=None):
    from annotator.config import ManifestConfig
    from annotator.data import build_manifest, read_manifest, read_rejects

    build_manifest(ds, ManifestConfig(check_images=False), str(tmp / name / "m"), str(tmp / name / "r"))
    return read_manifest(str(tmp / name / "m")).to_pylist(), read_rejects(str(tmp / name / "r")).to_pylist()


@pytest.mark.parametrize("reorder", [False, True])
def test_streamed_coco_gives_the_same_manifest(tmp_path, real_fixtures, monkeypatch, reorder):
    import annotator.data.adapters.coco as coco
    from annotator.config import DatasetConfig

    data = json.loads((real_fixtures / "coco" / "test_coco.json").read_text())
    data["annotations"].append({"id": 999, "image_id": 12345, "category_id": 1, "keypoints": [0] * 51, "bbox": [0, 0, 1, 1]})
    data["annotations"].append("not an object")
    if reorder:  # annotations before images: the streamed reader needs its two passes
        data = {"annotations": data["annotations"], "categories": data["categories"], "images": data["images"]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    ds = DatasetConfig(name="c", format="coco", role="target", path=str(path), images=str(real_fixtures / "coco"))
    streamed = _rows(ds, tmp_path, "stream")
    monkeypatch.setattr(coco, "read_coco_slim", lambda p, what="": json.loads(open(p, "rb").read()))
    whole = _rows(ds, tmp_path, "whole")
    assert streamed == whole and len(streamed[0]) == 12 and len(streamed[1]) >= 3


def test_streamed_reader_errors(tmp_path):
    from annotator.data.adapters.json_stream import read_coco_slim
    from annotator.data.manifest import ManifestError

    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [1, 2')
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_coco_slim(str(bad))
    with pytest.raises(ManifestError, match="not found"):
        read_coco_slim(str(tmp_path / "missing.json"))
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    assert read_coco_slim(str(lst)) == []
    noann = tmp_path / "noann.json"
    noann.write_text('{"images": []}')
    assert read_coco_slim(str(noann)) == {"images": []}
