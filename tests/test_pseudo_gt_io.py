"""Pseudo-GT contract: schema file in sync, downstream loader, SPIN / NeuralAnnot exports."""
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from annotator import storage
from annotator.data.export import SPIN_SCALE_UNIT_PX, export_neuralannot_json, export_spin_npz
from annotator.data.loader import PseudoGTDataset, scan_pseudo_gt
from annotator.data.pseudo_gt import PSEUDO_GT_SCHEMA, schema_document, to_table

ROOT = Path(__file__).resolve().parents[1]


def _rows(real_fixtures, n=3, seed=0):
    rng = np.random.default_rng(seed)
    img = str(real_fixtures / "coco" / "000000196141.jpg")
    return {
        "sample_id": np.array([f"coco/{100 + i}" for i in range(n)], dtype=object),
        "dataset": np.array(["coco"] * n, dtype=object),
        "image_path": np.array([img] * n, dtype=object),
        "bbox": np.array([[450, 200, 180, 210], [100, 50, 80, 200], [10, 10, 40, 90]][:n], np.float32),
        "image_width": np.full(n, 640, np.int32), "image_height": np.full(n, 429, np.int32),
        "focal_length": np.full(n, 766.0, np.float32), "principal_point": np.tile([320.0, 214.5], (n, 1)).astype(np.float32),
        "global_orient": rng.normal(size=(n, 3)).astype(np.float32),
        "body_pose": rng.normal(0, 0.2, size=(n, 69)).astype(np.float32),
        "betas": rng.normal(size=(n, 10)).astype(np.float32),
        "transl": rng.normal([0, 0, 5], 0.5, size=(n, 3)).astype(np.float32),
        "crop_cam": rng.normal(size=(n, 3)).astype(np.float32),
        "keypoint_convention": np.array(["coco17"] * n, dtype=object),
        "keypoints_2d": rng.uniform(0, 400, size=(n, 34)).astype(np.float32),
        "err2d_px": np.array([3.0, 12.0, 30.0][:n], np.float32),
        "err2d_norm": np.array([0.01, 0.06, 0.3][:n], np.float32),
        "method": np.array(["cliff"] * n, dtype=object), "checkpoint_id": np.array(["finetune:abc"] * n, dtype=object),
        "body_model_id": np.array(["open-anny-0.6.2-v1"] * n, dtype=object),
        "body_model_checksum": np.array(["0" * 64] * n, dtype=object),
    }


@pytest.fixture()
def pgt_dir(tmp_path, real_fixtures):
    cols = _rows(real_fixtures)
    d = tmp_path / "pseudo_gt" / "coco"
    d.mkdir(parents=True)
    pq.write_table(to_table(cols), d / "part-00000.parquet")
    # the run's manifest beside it: the loader takes each item's annotated keypoints from there
    from annotator.data.manifest import columns_to_table, write_manifest

    n = len(cols["sample_id"])
    kp = np.concatenate([cols["keypoints_2d"].reshape(n, 17, 2), np.ones((n, 17, 1), np.float32)], -1)
    write_manifest(columns_to_table(n, sample_id=list(cols["sample_id"]), dataset="coco", source="t.json",
                                    image_path=list(cols["image_path"]), image_width=np.full(n, 640, np.int32),
                                    image_height=np.full(n, 429, np.int32), bbox=np.tile([[100, 50, 80, 200]], (n, 1)),
                                    keypoints_2d=kp.reshape(n, -1), keypoint_convention="coco17",
                                    has_smpl=False, has_3d=False),
                   str(tmp_path / "manifest" / "coco"), shard_size=10)
    return d, cols


def test_schema_document_in_sync():
    doc = json.loads((ROOT / "schemas" / "pseudo_gt.v1.json").read_text())
    assert doc == schema_document()
    assert [c["name"] for c in doc["columns"]] == PSEUDO_GT_SCHEMA.names


def test_to_table_round_trips_values(pgt_dir):
    d, cols = pgt_dir
    t = pq.read_table(d / "part-00000.parquet")
    assert t.schema.equals(PSEUDO_GT_SCHEMA, check_metadata=False)
    np.testing.assert_array_equal(np.stack(t["body_pose"].to_numpy(zero_copy_only=False)), cols["body_pose"])
    np.testing.assert_array_equal(np.stack(t["keypoints_2d"].to_numpy(zero_copy_only=False)), cols["keypoints_2d"])


def test_loader_filters_and_yields_targets(pgt_dir):
    d, cols = pgt_dir
    assert scan_pseudo_gt(str(d), max_err2d_norm=0.1).num_rows == 2
    assert scan_pseudo_gt(str(d), max_err2d_px=5).num_rows == 1
    assert scan_pseudo_gt(str(d), datasets=["mpii"]).num_rows == 0
    ds = PseudoGTDataset(str(d), max_err2d_norm=0.1, crop_size=48)
    assert len(ds) == 2
    item = ds[1]
    assert item["img"].shape == (3, 48, 48) and item["img"].dtype == torch.float32
    np.testing.assert_allclose(item["body_pose"].numpy(), cols["body_pose"][1])
    np.testing.assert_allclose(item["transl"].numpy(), cols["transl"][1])
    # CLIFF bbox info (Eq. 5): box centre relative to the principal point, over the focal length
    cx, cy = 100 + 40, 50 + 100
    np.testing.assert_allclose(item["bbox_info"].numpy(), [(cx - 320) / 766, (cy - 214.5) / 766, 1.2 * 200 / 766], rtol=1e-5)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["betas"].shape == (2, 10)


def test_exports(tmp_path, pgt_dir):
    d, cols = pgt_dir
    n = export_spin_npz(str(d), str(tmp_path / "out.npz"), max_err2d_norm=0.1).rows
    assert n == 2
    z = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(z["pose"], np.concatenate([cols["global_orient"], cols["body_pose"]], 1)[:2])
    np.testing.assert_allclose(z["global_t"], cols["transl"][:2])
    np.testing.assert_allclose(z["center"][0], [450 + 90, 200 + 105])
    np.testing.assert_allclose(z["scale"][0], 1.2 * 210 / SPIN_SCALE_UNIT_PX)
    assert list(z["focal_l"]) == [766.0, 766.0]
    n = export_neuralannot_json(str(d), str(tmp_path / "out.json")).rows
    assert n == 3
    j = json.loads((tmp_path / "out.json").read_text())
    assert set(j) - {"_meta"} == {"100", "101", "102"} and j["_meta"]["body_model_id"]
    np.testing.assert_allclose(j["102"]["smpl_param"]["trans"], cols["transl"][2], rtol=1e-6)
    assert j["100"]["cam_param"] == {"focal": [766.0, 766.0], "princpt": [320.0, 214.5]}
    assert len(j["101"]["smpl_param"]["pose"]) == 72


def test_export_cli_on_s3(s3_bucket, pgt_dir, capsys):
    from annotator.cli import main

    d, _ = pgt_dir
    remote = storage.join(s3_bucket, "run", "pseudo_gt", "coco", "part-00000.parquet")
    storage.write_bytes_atomic(remote, (d / "part-00000.parquet").read_bytes())
    out = storage.join(s3_bucket, "exports", "coco.json")
    assert main(["export", "neuralannot", storage.join(s3_bucket, "run", "pseudo_gt", "coco"), "--out", out,
                 "--max-err2d-px", "20"]) == 0
    assert "wrote 2 rows" in capsys.readouterr().out
    assert set(storage.read_json(out)) - {"_meta"} == {"100", "101"}
