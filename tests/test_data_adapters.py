"""Adapters on the real COCO/MPII fixtures, corrupted copies, .mat / npz / Parquet layouts."""
from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io
from PIL import Image

from annotator.config import DatasetConfig, ManifestConfig
from annotator.data import ManifestError, build_manifest, read_manifest, read_rejects
from annotator.data.adapters.spin_npz import SPIN24_TO_COCO17, SPIN24_TO_H36M17

MCFG = ManifestConfig()


def _build(tmp_path, name, fmt, path, images=None, mcfg=MCFG, tag="a"):
    ds = DatasetConfig(name=name, format=fmt, role="target", path=str(path), images=images and str(images))
    info = build_manifest(ds, mcfg, str(tmp_path / tag / "manifest" / name), str(tmp_path / tag / "rejects" / name))
    rows = read_manifest(info.manifest_dir)
    rejects = read_rejects(info.rejects_dir)
    assert info.input_count == rows.num_rows + rejects.num_rows == info.num_rows + info.rejects_count
    return info, rows, rejects


def _reasons(rejects) -> dict[str, str]:
    return dict(zip(rejects.column("sample_id").to_pylist(), rejects.column("reason").to_pylist()))


def test_coco_real_fixture_exact_values(tmp_path, real_fixtures):
    ann_path = real_fixtures / "coco" / "test_coco.json"
    data = json.loads(ann_path.read_text())
    info, rows, rejects = _build(tmp_path, "coco", "coco", ann_path)
    assert (info.input_count, info.num_rows, info.rejects_by_reason) == (14, 12, {"too_few_keypoints": 2})
    assert set(_reasons(rejects)) == {"coco/1202706", "coco/508900"}  # the two num_keypoints=0 annotations
    images = {im["id"]: im for im in data["images"]}
    by_id = {r["sample_id"]: r for r in rows.to_pylist()}
    for ann in data["annotations"]:
        row = by_id.get(f"coco/{ann['id']}")
        if row is None:
            continue
        kp = np.array(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        got = np.array(row["keypoints_2d"]).reshape(17, 3)
        np.testing.assert_array_equal(got[:, :2], kp[:, :2])
        np.testing.assert_array_equal(got[:, 2], (kp[:, 2] > 0).astype(float))
        assert row["visibility"] == kp[:, 2].astype(int).tolist()
        np.testing.assert_allclose(row["bbox"], ann["bbox"], rtol=1e-6)
        im = images[ann["image_id"]]
        assert (row["image_width"], row["image_height"]) == (im["width"], im["height"])
        assert row["image_path"] == str(real_fixtures / "coco" / im["file_name"])
        assert row["keypoint_convention"] == "coco17" and not row["has_smpl"] and not row["has_3d"]


def _corrupt_coco(tmp_path, real_fixtures):
    """A modified copy of the COCO fixture with one instance per failure mode."""
    img_dir = tmp_path / "images"
    shutil.copytree(real_fixtures / "coco", img_dir, ignore=shutil.ignore_patterns("*.json"))
    (img_dir / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = json.loads((real_fixtures / "coco" / "test_coco.json").read_text())
    data["images"] += [dict(data["images"][0], id=1, file_name="gone.jpg"),
                       dict(data["images"][0], id=2, file_name="broken.jpg"),
                       dict(data["images"][0], id=3, width=999)]               # wrong size for the file
    a = data["annotations"]
    base = a[0]  # id 442619, image 785 (640x425), 17 keypoints
    a += [
        dict(base, id=9001, iscrowd=1),
        dict(base, id=9002, keypoints=[float("nan")] + base["keypoints"][1:]),
        dict(base, id=a[1]["id"]),                                   # duplicate of an existing id
        dict(base, id=9004, bbox=[700.0, 500.0, 50.0, 50.0]),         # right of / below the image
        dict(base, id=9005, image_id=1),                              # image file missing
        dict(base, id=9006, image_id=2),                              # image file corrupt
        dict(base, id=9007, image_id=424242),                         # image id not listed
        dict(base, id=9008, keypoints=base["keypoints"][:30]),        # wrong length
        dict(base, id=9009, bbox=[10.0, 10.0, -5.0, 20.0]),
        "not an annotation",
        dict(base, id=9011, image_id=3),
    ]
    path = tmp_path / "person_keypoints_bad.json"
    path.write_text(json.dumps(data))
    return path, img_dir


def test_coco_corrupted_copy_rejects_reconcile_and_is_deterministic(tmp_path, real_fixtures):
    path, img_dir = _corrupt_coco(tmp_path, real_fixtures)
    info, rows, rejects = _build(tmp_path, "bad", "coco", path, img_dir, mcfg=ManifestConfig(shard_size=5))
    expected = {"bad/9001": "crowd", "bad/9002": "non_finite", "bad/9004": "bbox_outside_image",
                "bad/9005": "missing_image", "bad/9006": "corrupt_image", "bad/9007": "unknown_image",
                "bad/9008": "invalid_value", "bad/9009": "invalid_value", "bad/annotations[23]": "corrupt_file", "bad/9011": "image_size_mismatch",
                "bad/1202706": "too_few_keypoints", "bad/508900": "too_few_keypoints"}
    got = _reasons(rejects)
    assert {k: got[k] for k in expected} == expected
    assert got[f"bad/{198196}"] == "duplicate_id"
    assert (info.input_count, info.num_rows, info.rejects_count) == (25, 12, 13)
    ids = rows.column("sample_id").to_pylist()
    assert len(info.shards) == 3 and ids == sorted(ids)
    detail = dict(zip(rejects.column("sample_id").to_pylist(), rejects.column("detail").to_pylist()))
    assert "gone.jpg" in detail["bad/9005"] and "keypoints_2d" in detail["bad/9002"]
    src = dict(zip(rejects.column("sample_id").to_pylist(), rejects.column("source").to_pylist()))
    assert src["bad/9004"].endswith("person_keypoints_bad.json:annotations[17] (id=9004)")
    # same input -> byte-identical manifest and rejects
    info2, _, _ = _build(tmp_path, "bad", "coco", path, img_dir, mcfg=ManifestConfig(shard_size=5), tag="b")
    for sub, names in (("manifest", info.shards), ("rejects", ["part-00000.parquet"])):
        for s in names:
            assert (tmp_path / "a" / sub / "bad" / s).read_bytes() == (tmp_path / "b" / sub / "bad" / s).read_bytes()


def test_malformed_annotation_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [], "annotations": [')
    with pytest.raises(ManifestError, match=r"broken\.json: not valid JSON"):
        _build(tmp_path, "x", "coco", bad)
    bad.write_text('{"images": []}')
    with pytest.raises(ManifestError, match=r"broken\.json: COCO file has no list 'annotations'"):
        _build(tmp_path, "x", "coco", bad)
    with pytest.raises(ManifestError, match=r"missing\.json: COCO annotation file not found"):
        _build(tmp_path, "x", "coco", tmp_path / "missing.json")
    bad.write_text('{"a": 1}')
    with pytest.raises(ManifestError, match=r"broken\.json: MPII JSON must be a list"):
        _build(tmp_path, "x", "mpii_json", bad)


def test_mpii_json_real_fixture_and_corrupted_copy(tmp_path, real_fixtures):
    path = real_fixtures / "mpii" / "test_mpii.json"
    data = json.loads(path.read_text())
    info, rows, _ = _build(tmp_path, "mpii", "mpii_json", path)
    assert info.num_rows == 5
    by_id = {r["sample_id"]: r for r in rows.to_pylist()}
    for e in data:
        row = by_id[f"mpii/{e['image']}/0"]
        kp = np.array(row["keypoints_2d"]).reshape(16, 3)
        np.testing.assert_allclose(kp[:, :2], np.array(e["joints"]), rtol=1e-6)
        np.testing.assert_array_equal(kp[:, 2], np.array(e["joints_vis"], float))
        with Image.open(real_fixtures / "mpii" / e["image"]) as im:
            assert (row["image_width"], row["image_height"]) == im.size  # from the header
        x, y, w, h = row["bbox"]
        lab = kp[kp[:, 2] > 0, :2]
        assert (lab[:, 0] >= x).all() and (lab[:, 0] <= x + w).all() and (lab[:, 1] >= y).all()
        # documented rule: joint box padded by 15% of its extent, united with centre_y +- 100 * scale
        pad = 0.15 * np.ptp(lab[:, 1])
        top = min(lab[:, 1].min() - pad, e["center"][1] - 100 * e["scale"])
        bottom = max(lab[:, 1].max() + pad, e["center"][1] + 100 * e["scale"])
        assert (y, h) == pytest.approx((top, bottom - top), rel=1e-5)
        assert w == pytest.approx(np.ptp(lab[:, 0]) * 1.3, rel=1e-5)
    # corrupted copy: missing key, NaN joint, missing image, second person on an image
    bad = [dict(data[0])] + [dict(d) for d in data]
    del bad[1]["joints"]
    bad[2]["joints"] = [[float("nan"), 1.0]] + data[1]["joints"][1:]
    bad[3]["image"] = "nope.jpg"
    bad_path = tmp_path / "mpii_bad.json"
    bad_path.write_text(json.dumps(bad))
    info, rows, rejects = _build(tmp_path, "mpii", "mpii_json", bad_path, real_fixtures / "mpii", tag="bad")
    assert _reasons(rejects) == {f"mpii/{data[0]['image']}/1": "corrupt_file",
                                 f"mpii/{data[1]['image']}/0": "non_finite", "mpii/nope.jpg/0": "missing_image"}
    assert info.num_rows == 3 and f"mpii/{data[0]['image']}/0" in rows.column("sample_id").to_pylist()


def _struct_array(records: list[dict], fields: list[str]) -> np.ndarray:
    """A MATLAB struct array (1 x n) as scipy.io.savemat writes it."""
    arr = np.zeros((1, len(records)), dtype=[(f, object) for f in fields])
    for i, r in enumerate(records):
        for f in fields:
            arr[0, i][f] = r.get(f, np.zeros((0, 0)))
    return arr


def test_mpii_mat_in_published_layout(tmp_path, real_fixtures):
    """Fixture built to the published RELEASE.annolist layout of mpii_human_pose_v1_u12_1.mat."""
    joints = np.array(json.loads((real_fixtures / "mpii" / "test_mpii.json").read_text())[0]["joints"])
    points = _struct_array([{"x": float(joints[k, 0]), "y": float(joints[k, 1]), "id": k,
                             "is_visible": (k % 2) if k != 9 else np.zeros((0, 0))} for k in range(16) if k != 3],
                           ["x", "y", "id", "is_visible"])
    rect = {"x1": 900.0, "y1": 80.0, "x2": 1000.0, "y2": 200.0, "scale": 4.718488,
            "objpos": {"x": 966.0, "y": 340.0}, "annopoints": {"point": points}}
    rects = _struct_array([rect, {"scale": 2.0, "objpos": {"x": 10.0, "y": 10.0}}],
                          ["x1", "y1", "x2", "y2", "scale", "objpos", "annopoints"])
    annolist = _struct_array([{"image": {"name": "005808361.jpg"}, "annorect": rects},
                              {"image": {"name": "052475643.jpg"}, "annorect": np.zeros((0, 0))}],
                             ["image", "annorect"])
    mat = tmp_path / "mpii_human_pose_v1_u12_1.mat"
    scipy.io.savemat(mat, {"RELEASE": {"annolist": annolist, "img_train": np.array([[1, 0]])}})
    info, rows, rejects = _build(tmp_path, "mpiimat", "mpii_mat", mat, real_fixtures / "mpii")
    assert (info.input_count, info.num_rows) == (2, 1)
    assert _reasons(rejects) == {"mpiimat/005808361.jpg/1": "too_few_keypoints"}
    row = rows.to_pylist()[0]
    kp = np.array(row["keypoints_2d"]).reshape(16, 3)
    lab = np.arange(16) != 3
    np.testing.assert_allclose(kp[lab, :2], joints[lab], rtol=1e-6)
    np.testing.assert_array_equal(kp[:, 2], lab.astype(float))
    expected_vis = [k % 2 for k in range(16)]
    expected_vis[3] = expected_vis[9] = -1
    assert row["visibility"] == expected_vis
    assert (row["image_width"], row["image_height"]) == (1280, 720)
    assert row["source"].endswith("mpii_human_pose_v1_u12_1.mat:annolist(1).annorect(1)")


def _write_images(folder, n, size=(320, 240)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (i * 40 % 255, 90, 30)).save(folder / f"im{i}.jpg", quality=80)
    return [f"im{i}.jpg" for i in range(n)]


def test_spin_npz_real_layout_maps_joints(tmp_path):
    rng = np.random.default_rng(1)
    n = 3
    names = _write_images(tmp_path / "imgs", n)
    part = np.concatenate([rng.uniform(20, 200, (n, 24, 2)), np.ones((n, 24, 1))], -1)
    s = np.concatenate([rng.normal(0, 0.5, (n, 24, 3)), np.ones((n, 24, 1))], -1)
    s[2, SPIN24_TO_H36M17[4], 3] = 0  # one 3D joint missing in row 2
    pose, shape = rng.normal(0, 0.2, (n, 72)), rng.normal(0, 1, (n, 10))
    path = tmp_path / "h36m_train.npz"
    np.savez(path, imgname=np.array(names), center=np.full((n, 2), 120.0), scale=np.full(n, 0.8), part=part,
             S=s, pose=pose, shape=shape, has_smpl=np.array([1, 1, 0]))
    info, rows, rejects = _build(tmp_path, "h36m", "spin_npz", path, tmp_path / "imgs")
    assert info.num_rows == 3 and rejects.num_rows == 0
    r = {x["sample_id"]: x for x in rows.to_pylist()}
    kp = np.array(r["h36m/1"]["keypoints_2d"]).reshape(17, 3)
    np.testing.assert_allclose(kp, part[1, SPIN24_TO_COCO17], rtol=1e-6)
    np.testing.assert_allclose(np.array(r["h36m/0"]["joints_3d"]).reshape(17, 3), s[0, SPIN24_TO_H36M17, :3], rtol=1e-6)
    assert r["h36m/0"]["bbox"] == pytest.approx([40.0, 40.0, 160.0, 160.0])
    assert r["h36m/0"]["joints_3d_convention"] == "h36m17" and r["h36m/0"]["has_3d"]
    assert not r["h36m/2"]["has_3d"] and r["h36m/2"]["joints_3d"] is None
    np.testing.assert_allclose(r["h36m/1"]["smpl_body_pose"], pose[1, 3:], rtol=1e-6)
    np.testing.assert_allclose(r["h36m/1"]["smpl_global_orient"], pose[1, :3], rtol=1e-6)
    assert r["h36m/2"]["smpl_betas"] is None and not r["h36m/2"]["has_smpl"]
    assert (r["h36m/0"]["image_width"], r["h36m/0"]["image_height"]) == (320, 240)


def test_spin_npz_explicit_convention_and_bad_keys(tmp_path):
    n = 2
    names = _write_images(tmp_path / "imgs", n)
    part = np.tile(np.array([[50.0, 60.0, 1.0]]), (n, 17, 1))
    part[1, 0, 0] = np.inf
    path = tmp_path / "synth.npz"
    np.savez(path, imgname=np.array(names), center=np.full((n, 2), 100.0), scale=np.full(n, 0.5), part=part,
             keypoint_convention=np.array("coco17"), focal_length=np.array([500.0, 600.0]),
             transl=np.ones((n, 3)), pose=np.zeros((n, 72)), shape=np.zeros((n, 10)),
             image_width=np.array([320, 320]), image_height=np.array([240, 240]))
    info, rows, rejects = _build(tmp_path, "syn", "spin_npz", path, tmp_path / "imgs")
    assert _reasons(rejects) == {"syn/1": "non_finite"}
    row = rows.to_pylist()[0]
    assert row["sample_id"] == "syn/0" and row["focal_length"] == 500.0 and row["smpl_transl"] == [1.0, 1.0, 1.0]
    assert row["keypoint_convention"] == "coco17" and row["has_smpl"]
    np.savez(path, imgname=np.array(names), center=np.zeros((n, 2)), scale=np.ones(n))
    with pytest.raises(ManifestError, match=r"synth\.npz: missing required key 'part'"):
        _build(tmp_path, "syn", "spin_npz", path, tag="b")
    np.savez(path, imgname=np.array(names), center=np.zeros((n + 1, 2)), scale=np.ones(n), part=part,
             keypoint_convention=np.array("coco17"))
    with pytest.raises(ManifestError, match=r"synth\.npz: key 'center' has 3 rows"):
        _build(tmp_path, "syn", "spin_npz", path, tag="c")


def test_parquet_source_roundtrip_and_missing_column(tmp_path, real_fixtures):
    info, rows, _ = _build(tmp_path, "coco", "coco", real_fixtures / "coco" / "test_coco.json")
    info2, rows2, rej2 = _build(tmp_path, "coco", "parquet", info.manifest_dir, tag="pq")
    assert rows2.equals(rows) and rej2.num_rows == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    pq.write_table(rows.drop_columns(["keypoints_2d"]), broken / "x.parquet")
    with pytest.raises(ManifestError, match=r"broken/x\.parquet: missing required column 'keypoints_2d'"):
        _build(tmp_path, "b", "parquet", broken, tag="pq2")


def test_cli_manifest_command(tmp_path, real_fixtures, capsys):
    from annotator.data.cli import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    out = tmp_path / "run" / "manifest" / "c"
    args = parser.parse_args(["manifest", "--format", "coco", "--path", str(real_fixtures / "coco" / "test_coco.json"),
                              "--name", "c", "--out", str(out), "--shard-size", "5"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["num_rows"], summary["rejects_count"], len(summary["shards"])) == (12, 2, 3)
    assert (tmp_path / "run" / "rejects" / "c" / "part-00000.parquet").exists()
    args = parser.parse_args(["manifest", "--format", "coco", "--path", str(tmp_path / "nope.json"),
                              "--name", "c", "--out", str(out)])
    assert args.func(args) == 2
    captured = capsys.readouterr()
    assert "nope.json" in captured.err and captured.out == ""  # whole-file errors go to stderr
