"""The synthetic world end to end: real formats, 3D truth consistency, determinism, read-back."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from annotator.body.joints import select_keypoints
from annotator.config import ManifestConfig
from annotator.data.synth.pipeline import GT_FILE, annotation_path, dataset_config, generate

REPROJECTION_TOLERANCE_PX = 0.5


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, body_model):
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for key, domain, n, seed in (("wild", "wild", 4, 0), ("wild_again", "wild", 4, 0), ("wild_seed1", "wild", 4, 1),
                                 ("lab", "lab", 3, 0), ("lab_again", "lab", 3, 0), ("wild3d", "wild3d", 2, 0)):
        d = root / key
        res = generate(domain, n, seed, str(d), model=body_model, keypoint_noise=0.0)
        assert res.annotations == annotation_path(str(d), domain) and res.ground_truth == str(d / GT_FILE)
        out[key] = (d, res.summary)
    return out


def _gt(d: Path):
    return pq.read_table(d / GT_FILE).to_pylist()


def _project(points: np.ndarray, focal: float, pp) -> np.ndarray:
    return points[:, :2] / points[:, 2:] * focal + np.asarray(pp)


def test_wild_coco_keypoints_reproject_from_3d_truth(datasets):
    d, summary = datasets["wild"]
    doc = json.loads((d / "annotations" / "person_keypoints.json").read_text())
    assert doc["categories"][0]["keypoints"][0] == "nose" and len(doc["categories"][0]["keypoints"]) == 17
    anns = {a["id"]: a for a in doc["annotations"]}
    gt = {r["annotation_id"]: r for r in _gt(d)}
    assert set(anns) == set(gt) and len(anns) == summary["num_people"] >= 4
    images = {im["id"]: im for im in doc["images"]}
    checked = 0
    for ann_id, ann in anns.items():
        row = gt[ann_id]
        kps = np.asarray(ann["keypoints"], float).reshape(17, 3)
        uv = _project(np.asarray(row["joints_3d"]).reshape(17, 3), row["focal_length"], row["principal_point"])
        labelled = kps[:, 2] > 0
        assert np.abs(kps[labelled, :2] - uv[labelled]).max() < REPROJECTION_TOLERANCE_PX
        assert np.allclose(np.asarray(row["keypoints_2d"]).reshape(17, 2), uv, atol=1e-6)
        # v = 0 exactly for keypoints outside the image
        im = images[ann["image_id"]]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < im["width"]) & (uv[:, 1] >= 0) & (uv[:, 1] < im["height"])
        assert np.array_equal(labelled, inside)
        assert ann["num_keypoints"] == labelled.sum() and ann["iscrowd"] == 0
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
        assert 0 <= ann["area"] <= w * h
        checked += labelled.sum()
    assert checked > 30
    assert summary["keypoint_visibility"]["1"] > 0 and summary["keypoint_visibility"]["2"] > 0


def test_ground_truth_parameters_reproduce_the_joints(datasets, body_model):
    for key in ("wild", "lab"):
        rows = _gt(datasets[key][0])

        def t(key: str) -> torch.Tensor:
            return torch.tensor([r[key] for r in rows], dtype=torch.float32)

        out = body_model(t("global_orient"), t("body_pose"), t("betas"), t("transl"))
        joints = select_keypoints(out.keypoints, body_model.keypoint_names, "coco17")
        assert torch.allclose(joints.reshape(len(rows), -1), t("joints_3d"), atol=1e-4)
        assert all(r["body_model_id"] == body_model.model_id and r["body_model_checksum"] == body_model.checksum
                   for r in rows)
        assert (t("transl")[:, 2] > 1.0).all()  # in front of the camera
        assert np.abs(np.asarray([r["betas"] for r in rows])).max() <= 2.5


def test_lab_npz_is_spin_style_with_3d_truth(datasets):
    d, summary = datasets["lab"]
    data = np.load(d / "annotations" / "lab.npz")
    n = summary["num_people"]
    assert n == 3  # one subject per lab image
    shapes = {"center": (n, 2), "scale": (n,), "part": (n, 17, 3), "S": (n, 17, 4), "pose": (n, 72),
              "shape": (n, 10), "has_smpl": (n,), "transl": (n, 3), "focal_length": (n,),
              "principal_point": (n, 2), "image_width": (n,), "image_height": (n,)}
    for key, shape in shapes.items():
        assert data[key].shape == shape, key
    assert str(data["keypoint_convention"]) == "coco17" and str(data["joints_3d_convention"]) == "coco17"
    for i, name in enumerate(data["imgname"]):
        assert (d / "images" / str(name)).is_file()
        uv = _project(data["S"][i, :, :3], data["focal_length"][i], data["principal_point"][i])
        assert np.abs(data["part"][i, :, :2] - uv).max() < 1e-6
        # scale = box side / 200 around the centre: the box holds the labelled keypoints
        half = 100 * data["scale"][i]
        pts = data["part"][i][data["part"][i, :, 2] > 0, :2]
        assert (np.abs(pts - data["center"][i]) <= half + 2).all()
    gt = _gt(d)
    assert [r["annotation_id"] for r in gt] == list(range(n))
    assert np.allclose(np.asarray([r["body_pose"] for r in gt]), data["pose"][:, 3:])


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical_and_seeds_differ(datasets):
    a, b, c = (_files(datasets[k][0]) for k in ("wild", "wild_again", "wild_seed1"))
    assert a.keys() == b.keys() and len(a) == 4 + 3  # 4 JPEGs, COCO JSON, GT parquet, summary
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith((".jpg", ".json", ".parquet")))
    lab, lab_again = _files(datasets["lab"][0]), _files(datasets["lab_again"][0])
    assert "annotations/lab.npz" in lab and lab == lab_again


def test_outputs_read_back_through_the_manifest_adapters(datasets, tmp_path):
    from annotator.data.adapters import build_manifest
    from annotator.data.manifest import read_manifest, read_rejects

    for key, role in (("wild", "target"), ("lab", "aux3d"), ("wild3d", "eval3d")):
        d, summary = datasets[key]
        domain = summary["config"]["domain"]
        ds = dataset_config(str(d), domain, name=f"synth_{key}", role=role)
        assert ds.path == annotation_path(str(d), domain)
        build_manifest(ds, ManifestConfig(), str(tmp_path / key / "manifest"), str(tmp_path / key / "rejects"))
        rows = read_manifest(str(tmp_path / key / "manifest"))
        rejects = read_rejects(str(tmp_path / key / "rejects"))
        assert rejects.num_rows == 0, rejects.to_pylist()
        assert rows.num_rows == summary["num_people"]
        if domain != "wild":
            assert all(rows.column("has_3d").to_pylist()) and all(rows.column("has_smpl").to_pylist())


def test_another_process_with_more_threads_writes_the_same_bytes(datasets, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "wild_subprocess"
    code = ("import torch; torch.set_num_threads(2); from annotator.data.synth import generate; "
            f"generate('wild', 4, 0, {str(out)!r}, keypoint_noise=0.0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert _files(out) == _files(datasets["wild"][0])


def test_wild_labels_carry_coco_like_annotator_noise(datasets, tmp_path, body_model):
    """keypoint_noise=1: labelled keypoints scatter around the exact projections with COCO's
    per-keypoint spread (RMS sigma_k * sqrt(area)); images, truth and visibility are unchanged."""
    from annotator.body.joints import COCO17_OKS_SIGMAS

    exact_dir, _ = datasets["wild"]
    noisy_dir = tmp_path / "noisy"
    generate("wild", 4, 0, str(noisy_dir), model=body_model, keypoint_noise=1.0)
    exact, noisy = _files(exact_dir), _files(noisy_dir)
    assert all(exact[k] == noisy[k] for k in exact if k.endswith((".jpg", ".parquet")))
    ann = json.loads(noisy["annotations/person_keypoints.json"])["annotations"]
    ref = {a["id"]: a for a in json.loads(exact["annotations/person_keypoints.json"])["annotations"]}
    ratios = []
    for a in ann:
        k_noisy, k_exact = np.reshape(a["keypoints"], (17, 3)), np.reshape(ref[a["id"]]["keypoints"], (17, 3))
        assert np.array_equal(k_noisy[:, 2], k_exact[:, 2]) and a["bbox"] == ref[a["id"]]["bbox"]
        lab = k_noisy[:, 2] > 0
        d2 = ((k_noisy[lab, :2] - k_exact[lab, :2]) ** 2).sum(1)
        ratios.extend(d2 / (np.asarray(COCO17_OKS_SIGMAS)[lab] ** 2 * a["area"]))
    assert len(ratios) > 30
    # E[d^2 / (sigma^2 area)] = 1 for the intended spread (a few labels are clipped at the border)
    assert 0.6 < float(np.mean(ratios)) < 1.4, np.mean(ratios)
