"""Datasets of different formats and joint conventions in one job (issue 13)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from annotator.body.joints import COCO17_NAMES, MPII16_NAMES
try:
    from tests.test_pipeline import ray_local, write_job  # noqa: F401  (ray_local is a fixture)
except ModuleNotFoundError:  # tests/ itself on sys.path (pytest's rootdir-less import mode)
    from test_pipeline import ray_local, write_job  # noqa: F401


def test_keypoints_of_mixed_conventions_in_one_batch():
    """A batch holding COCO (17 joints), MPII (16) and a null row: each row is read in its
    own convention (was: ValueError 'all input arrays must have the same shape')."""
    from annotator.data.batching import _keypoints

    coco = np.arange(17 * 3, dtype=np.float32)
    mpii = 1000 + np.arange(16 * 3, dtype=np.float32)
    batch = {"kp": np.array([coco, mpii, np.zeros(0, np.float32)], dtype=object),
             "conv": np.array(["coco17", "mpii16", "coco17"], dtype=object)}
    out, present = _keypoints(batch, "kp", "conv", 3)
    assert out.shape == (3, 17, 3)
    np.testing.assert_array_equal(out[0], coco.reshape(17, 3))
    assert present[0].all() and not present[2].any() and not out[2].any()
    for j, name in enumerate(COCO17_NAMES):
        if name in MPII16_NAMES:
            np.testing.assert_array_equal(out[1, j], mpii.reshape(16, 3)[MPII16_NAMES.index(name)])
            assert present[1, j]
        else:
            assert not present[1, j] and not out[1, j].any()


def test_dense_list_columns_removes_list_nulls():
    """Null list values (visibility of MPII/SPIN rows, joints_3d of COCO rows) become empty
    lists / NaN, which the batch code reads as 'absent' (Ray Data refused to concatenate a
    null-object block with a tensor block: 'Found columns with both objects and tensors')."""
    from annotator.data.batching import stack_list_column
    from annotator.steps.runtime import dense_list_columns

    t = pa.table({
        "visibility": pa.array([[2, 1], None], type=pa.list_(pa.int8())),
        "principal_point": pa.array([[1.0, 2.0], None], type=pa.list_(pa.float32(), 2)),
        "focal_length": pa.array([None, 3.0], type=pa.float32()),
    })
    d = dense_list_columns(t)
    assert d["visibility"].null_count == 0 and d["principal_point"].null_count == 0
    assert d["focal_length"].null_count == 1  # scalars keep their nulls
    assert d["visibility"].to_pylist() == [[2, 1], []]
    pp, valid = stack_list_column(np.stack(d["principal_point"].to_numpy(zero_copy_only=False)), 2)
    assert valid.tolist() == [True, False]
    vis, valid = stack_list_column(np.array([np.asarray(v) for v in d["visibility"].to_pylist()], dtype=object))
    assert valid.tolist() == [True, False]


def _spin_npz_from_coco(fixtures, out):
    """A real-SPIN-layout npz (24-joint part and S, no convention keys) of the COCO fixture people."""
    import json

    from annotator.body.joints import COCO17_NAMES, SPIN24_NAMES

    d = json.loads((fixtures / "coco" / "test_coco.json").read_text())
    ims = {i["id"]: i for i in d["images"]}
    anns = [a for a in d["annotations"] if not a.get("iscrowd") and sum(v > 0 for v in a["keypoints"][2::3]) >= 4][:5]
    idx = [SPIN24_NAMES.index(n) for n in COCO17_NAMES]
    part = np.zeros((len(anns), 24, 3))
    for i, a in enumerate(anns):
        k = np.asarray(a["keypoints"], float).reshape(17, 3)
        part[i, idx] = np.c_[k[:, :2], k[:, 2] > 0]
    bb = np.asarray([a["bbox"] for a in anns], float)
    s = np.random.default_rng(0).normal(size=(len(anns), 24, 4)) * 0.3
    s[..., 2] += 4
    s[..., 3] = 1
    np.savez(out, imgname=np.asarray([ims[a["image_id"]]["file_name"] for a in anns]),
             center=bb[:, :2] + bb[:, 2:] / 2, scale=bb[:, 2:].max(1) * 1.2 / 200, part=part, S=s)
    return len(anns)


@pytest.mark.slow
def test_job_with_coco_mpii_and_spin_npz_targets(tmp_path, real_fixtures, ray_local):
    """COCO (format coco) + MPII (mpii_json) + SPIN-npz targets in one job: every manifest row
    of each ends up in pseudo-GT or rejects; the SPIN export of all three keeps every row."""
    import pyarrow.parquet as pq

    from annotator.config import load_job
    from annotator.run import run_job

    n_spin = _spin_npz_from_coco(real_fixtures, tmp_path / "spin.npz")
    datasets = [
        {"name": "lab", "format": "synth", "role": "aux3d", "synth": {"domain": "lab", "num_images": 16, "seed": 3}},
        {"name": "coco", "format": "coco", "role": "target", "path": str(real_fixtures / "coco" / "test_coco.json"),
         "images": str(real_fixtures / "coco")},
        {"name": "mpii", "format": "mpii_json", "role": "target", "path": str(real_fixtures / "mpii" / "test_mpii.json"),
         "images": str(real_fixtures / "mpii")},
        {"name": "spin", "format": "spin_npz", "role": "target", "path": str(tmp_path / "spin.npz"),
         "images": str(real_fixtures / "coco")},
    ]
    job = write_job(tmp_path, str(tmp_path / "runs"), datasets=datasets,
                    steps=["manifest", "train-pose-prior", "pretrain", "predict-prior", "finetune", "reinfer"])
    summary = run_job(load_job(job))
    assert all(s["status"] == "ran" for s in summary.values()), summary
    run = tmp_path / "runs" / "tiny"

    def ids(path, pattern="part-*.parquet"):
        files = sorted(path.glob(pattern))
        return sorted(pq.read_table(files, columns=["sample_id"])["sample_id"].to_pylist()) if files else []

    for name in ("coco", "mpii", "spin"):
        manifest = ids(run / "manifest" / name)
        assert manifest and (name != "spin" or len(manifest) == n_spin)
        for out, step in (("prior", "predict-prior"), ("pseudo_gt", "reinfer")):
            got = ids(run / out / name) + ids(run / "rejects" / name, f"{step}-part-*.parquet")
            assert sorted(got) == manifest, (name, out)

    from annotator.data.export import export_spin_npz

    out = tmp_path / "all.npz"
    info = export_spin_npz([str(run / "pseudo_gt" / n) for n in ("coco", "mpii", "spin")], str(out))
    data = np.load(out)
    assert info.rows == len(data["imgname"]) == sum(len(ids(run / "pseudo_gt" / n)) for n in ("coco", "mpii", "spin"))
    assert data["part"].shape == (info.rows, 24, 3) and data["part"][..., 2].sum(1).min() >= 4
    spin_rows = data["dataset"] == "spin"
    # S: the 3D joints of rows that have them (joints their source convention lacks keep confidence 0)
    assert "S" in data.files and (data["S"][spin_rows, :, 3] > 0).sum(1).min() >= 12
    assert not data["S"][~spin_rows, :, 3].any()
    assert all(not p.startswith("/") for p in data["imgname"]) and str(data["body_model_id"])


def test_null_rows_of_fixed_width_columns_are_zeros_not_nan():
    """NaN-filled null rows (dense_list_columns) reach the losses as zeros: a masked loss
    multiplies them by 0, and 0 * NaN is NaN (finetune on mixed targets went NaN)."""
    from annotator.data.batching import stack_list_column

    arr, valid = stack_list_column(np.array([[1.0, 2.0, 3.0], [np.nan] * 3], np.float32), 3)
    assert valid.tolist() == [True, False] and np.isfinite(arr).all() and not arr[1].any()
