"""Exports downstream code reads (issue 13): SPIN/CLIFF npz, NeuralAnnot JSON, mmhuman3d
HumanData, and the PyTorch loader's items. Read back the way the consumers parse them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from annotator.body.joints import COCO17_NAMES, MPII16_NAMES, SPIN24_NAMES


def fake_run(tmp: Path, fixtures: Path, body_model, collide: bool = False) -> Path:
    """A run directory with real COCO + MPII manifests, pseudo-GT for every manifest row
    (random parameters) and the run's body model file."""
    from annotator.body.open_model import ensure_open_model
    from annotator.config import DatasetConfig, ManifestConfig
    from annotator.data import build_manifest, read_manifest
    from annotator.data.pseudo_gt import PARAM_WIDTHS, to_table
    import pyarrow.parquet as pq

    run = tmp / "run"
    sets = [("coco", "coco", fixtures / "coco" / "test_coco.json", fixtures / "coco"),
            ("mpii", "mpii_json", fixtures / "mpii" / "test_mpii.json", fixtures / "mpii")]
    rng = np.random.default_rng(0)
    for name, fmt, path, images in sets:
        ds = DatasetConfig(name=name, format=fmt, role="target", path=str(path), images=str(images))
        build_manifest(ds, ManifestConfig(), str(run / "manifest" / name), str(run / "rejects" / name))
        m = read_manifest(str(run / "manifest" / name))
        n = m.num_rows
        ids = m["sample_id"].to_pylist()
        cols = {c: rng.normal(size=(n, w)).astype(np.float32) * 0.1 for c, w in PARAM_WIDTHS.items()}
        cols["transl"][:, 2] = 5
        cols.update(sample_id=ids, dataset=[name] * n, image_path=m["image_path"].to_pylist(),
                    bbox=np.stack(m["bbox"].to_numpy(zero_copy_only=False)),
                    image_width=m["image_width"].to_numpy(), image_height=m["image_height"].to_numpy(),
                    focal_length=np.full(n, 1000.0), principal_point=np.full((n, 2), 320.0),
                    keypoint_convention=["coco17"] * n, keypoints_2d=np.zeros((n, 34)),
                    err2d_px=np.full(n, 5.0), err2d_norm=np.full(n, 0.05), method=["cliff"] * n,
                    checkpoint_id=["reinfer:x"] * n, body_model_id=[body_model.model_id] * n,
                    body_model_checksum=[body_model.checksum] * n)
        if name == "coco":
            coco_ids = ids
        if collide and name == "mpii":  # bare ids equal to COCO ones (as two COCO-format sets have)
            cols["sample_id"] = [f"mpii/{s.split('/', 1)[1]}" for s in coco_ids[:n]]
        (run / "pseudo_gt" / name).mkdir(parents=True)
        pq.write_table(to_table(cols), run / "pseudo_gt" / name / "part-00000.parquet")
    (run / "body_model" / "smpl").mkdir(parents=True)
    shutil.copy(ensure_open_model(body_model.info.get("cache_dir") or _cache()), run / "body_model" / "smpl" / "SMPL_NEUTRAL.pkl")
    return run


def _cache():
    from annotator.config import BodyModelConfig

    return BodyModelConfig().cache_dir


@pytest.fixture()
def run(tmp_path, real_fixtures, body_model):
    return fake_run(tmp_path, real_fixtures, body_model)


def test_spin_npz_has_what_spin_cliff_and_mmhuman3d_read(run, tmp_path, real_fixtures, capsys):
    from annotator.cli import main
    from annotator.data import read_manifest

    out = tmp_path / "x.npz"
    rc = main(["export", "spin", str(run / "pseudo_gt" / "coco"), str(run / "pseudo_gt" / "mpii"), "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "6,890" in err and "13,718" in err  # the open model is not SMPL's mesh
    data = np.load(out)  # no pickles: SPIN and CLIFF load without allow_pickle
    n = len(data["imgname"])
    coco, mpii = read_manifest(str(run / "manifest" / "coco")), read_manifest(str(run / "manifest" / "mpii"))
    assert n == coco.num_rows + mpii.num_rows
    # SPIN base_dataset.py: join(img_dir, imgname); center, scale, part, pose, betas, has_smpl
    root = Path(str(data["images_root"]))
    assert root == real_fixtures and all(not Path(p).is_absolute() and (root / p).exists() for p in data["imgname"])
    assert data["center"].shape == (n, 2) and data["scale"].shape == (n,)
    assert data["pose"].shape == (n, 72) and data["shape"].shape == (n, 10) and (data["has_smpl"] == 1).all()
    assert data["global_t"].shape == (n, 3) and data["focal_l"].shape == (n,) and data["principal_point"].shape == (n, 2)
    part = data["part"]
    assert part.shape == (n, 24, 3) and set(np.unique(part[..., 2])) <= {0.0, 1.0}
    # every row's annotated keypoints land on the SPIN joints of the same name
    sid = list(data["sample_id"])
    for table, names in ((coco, COCO17_NAMES), (mpii, MPII16_NAMES)):
        for row in table.to_pylist():
            kp = np.asarray(row["keypoints_2d"], np.float32).reshape(-1, 3)
            i = sid.index(row["sample_id"])
            for j, name in enumerate(names):
                k = SPIN24_NAMES.index(name)
                assert part[i, k, 2] == float(kp[j, 2] > 0)
                if kp[j, 2] > 0:
                    np.testing.assert_allclose(part[i, k, :2], kp[j, :2])
    # SPIN's 2D loss weights are the confidences: not all zero (it fell back to zeros without 'part')
    assert part[..., 2].sum(axis=1).min() >= 4
    assert "S" not in data.files  # no 3D truth in these sets
    assert str(data["body_model_id"]).startswith("open") and len(str(data["body_model_checksum"])) == 64
    assert int(data["body_model_num_vertices"]) == 13718
    # annot_id: COCO ids are numbers, MPII ones "<image>/<k>" -> str for the mixed file
    assert {str(x) for x in data["annot_id"]} == {s.split("/", 1)[1] for s in sid}
    # mmhuman3d CliffConverter: keeps SMPL only where has_smpl, reads part; CLIFF viz reads annot_id
    keep = data["has_smpl"] > 0
    assert keep.all() and data["part"][keep].shape[1] == 24


def test_spin_npz_carries_3d_truth_as_S(tmp_path, body_model):
    """Rows with 3D truth (SPIN-npz sets with S) export S in SPIN's 24-joint order."""
    from annotator.data.export import export_spin_npz
    from annotator.data.loader import keypoints_in
    import pyarrow as pa

    ann = pa.table({"joints_3d": pa.array([list(np.arange(51, dtype=float)), []], type=pa.list_(pa.float32())),
                    "joints_3d_convention": ["h36m17", None]})
    xyz, present = keypoints_in(ann, "spin24", "joints_3d", "joints_3d_convention")
    assert xyz.shape == (2, 24, 3) and present[0].sum() == 17 and not present[1].any()
    np.testing.assert_array_equal(xyz[0, SPIN24_NAMES.index("spine")], [21, 22, 23])  # h36m17 spine is joint 7
    assert export_spin_npz  # the npz path is covered end to end in test_mixed_datasets


def test_neuralannot_json_never_drops_rows(tmp_path, real_fixtures, body_model, capsys):
    from annotator.cli import main

    run = fake_run(tmp_path, real_fixtures, body_model, collide=True)
    dirs = [str(run / "pseudo_gt" / "coco"), str(run / "pseudo_gt" / "mpii")]
    out = tmp_path / "x.json"
    assert main(["export", "neuralannot", *dirs, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "collide" in err and "coco/" in err and "mpii/" in err and not out.exists()
    assert main(["export", "neuralannot", *dirs, "--out", str(out), "--key-by", "sample_id"]) == 0
    data = json.loads(out.read_text())
    meta = data.pop("_meta")
    assert meta["rows"] == len(data) and meta["body_model_num_vertices"] == 13718
    assert len(data) == meta["rows"] == 12 + 5
    # NeuralAnnot demo_smpl.py / Hand4Whole MSCOCO.py: smpl_params[str(aid)]['smpl_param'|'cam_param']
    one = next(iter(data.values()))
    assert len(one["smpl_param"]["pose"]) == 72 and len(one["cam_param"]["princpt"]) == 2
    # one dataset: bare annotation ids, as NeuralAnnot's readers look them up
    assert main(["export", "neuralannot", dirs[0], "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    data.pop("_meta")
    assert all(k.isdigit() for k in data)


def test_humandata_reads_back_like_mmhuman3d(run, tmp_path):
    """Parsed the way mmhuman3d ``HumanData.load`` does (np.load allow_pickle, 0-d arrays -> item())."""
    from annotator.data.export import export_humandata

    out = tmp_path / "h.npz"
    info = export_humandata([str(run / "pseudo_gt" / "coco"), str(run / "pseudo_gt" / "mpii")], str(out))
    hd = {}
    with np.load(out, allow_pickle=True) as f:  # our own file
        for key, value in dict(f).items():
            if isinstance(value, np.ndarray) and value.shape == ():
                value = value.item()
            elif key == "image_path":
                value = list(value)
            hd[key] = value
    n = info.rows
    assert hd["__temporal_len__"] == n and hd["__key_strict__"] is False
    assert len(hd["image_path"]) == n and hd["bbox_xywh"].shape == (n, 5)
    assert hd["keypoints2d"].shape == (n, 17, 3) and hd["keypoints2d_mask"].shape == (17,)
    assert hd["keypoints2d_convention"] == "coco" and hd["keypoints2d_mask"].all()
    assert hd["smpl"]["body_pose"].shape == (n, 23, 3) and hd["smpl"]["global_orient"].shape == (n, 3)
    assert hd["smpl"]["betas"].shape == (n, 10) and hd["smpl"]["transl"].shape == (n, 3)
    assert hd["meta"]["body_model_checksum"] == info.body_model_checksum and len(hd["meta"]["gender"]) == n


def test_loader_items_carry_sample_id_keypoints_errors_validity(run):
    import torch

    from annotator.data.loader import PseudoGTDataset

    ds = PseudoGTDataset([str(run / "pseudo_gt" / "coco"), str(run / "pseudo_gt" / "mpii")], crop_size=32)
    item = ds[0]
    assert isinstance(item["sample_id"], str) and item["sample_id"] in ds.sample_id
    assert item["keypoints_2d"].shape == (17, 2) and item["keypoints_conf"].shape == (17,)
    assert float(item["err2d_px"]) == 5.0 and float(item["err2d_norm"]) == pytest.approx(0.05)
    assert item["valid"].dtype == torch.bool and bool(item["valid"])
    batch = torch.utils.data.default_collate([ds[0], ds[len(ds) - 1]])
    assert len(batch["sample_id"]) == 2 and batch["keypoints_conf"].shape == (2, 17)
    assert ds.arrays["keypoints_conf"].sum(axis=1).min() >= 4
