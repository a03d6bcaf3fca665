"""The per-shard inference logic of :mod:`annotator.steps.infer`, without Ray: the
``Predictor`` on a decoded batch, ``attach_outputs`` (prior / pseudo-GT lookup by shard and
``sample_id``) and the exactly-once shard commit ``_commit_shard``."""
from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from annotator.config import CropConfig, DatasetConfig, JobConfig
from annotator.data.batching import decode_batch
from annotator.data.manifest import columns_to_table, manifest_shards, read_parquet_file, write_manifest
from annotator.data.pseudo_gt import PARAM_WIDTHS, PSEUDO_GT_SCHEMA
from annotator.steps import infer
from annotator.steps.infer import (PRIOR_SOURCE_COLUMNS, Predictor, _commit_shard, attach_outputs, attach_pseudo_gt,
                                   attach_prior)
from annotator.steps.runtime import dense_list_columns, save_torch

pytestmark = pytest.mark.usefixtures("single_thread")

STEP = "reinfer"
DATASET = "toy"
ROWS = 6  # manifest rows, 2 shards of 3
MISSING_ROW = 4  # this row's image does not exist: decode marks it not ok


def _cfg(root) -> JobConfig:
    ds = DatasetConfig(name=DATASET, format="coco", role="target", path=str(root / "toy.json"))
    return JobConfig(name="unit", datasets=[ds], storage={"root": str(root)}, device="cpu",
                     crop=CropConfig(size=32), network={"backbone": "resnet18"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 2-shard manifest of random JPEGs (one row's image missing), CliffNet weights of a
    seeded random network, and the job config."""
    root = tmp_path_factory.mktemp("infer")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        p = root / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(p, quality=95)
        paths.append(str(p))
    image_path = [paths[i % 2] for i in range(ROWS)]
    image_path[MISSING_ROW] = str(root / "missing.jpg")
    kp = np.concatenate([rng.uniform(30, 110, (ROWS, 17, 2)), rng.uniform(0.5, 1.0, (ROWS, 17, 1))], -1)
    kp[1, :, 2] = 0.0  # row 1 has no labelled keypoint: err2d is undefined (NaN)
    table = columns_to_table(
        ROWS, sample_id=[f"{DATASET}/{i}" for i in range(ROWS)], dataset=DATASET, source="toy.json",
        image_path=image_path, image_width=np.full(ROWS, 160, np.int32), image_height=np.full(ROWS, 120, np.int32),
        bbox=np.column_stack([rng.uniform(10, 50, (ROWS, 2)), rng.uniform(40, 60, (ROWS, 2))]),
        keypoints_2d=kp.reshape(ROWS, -1), keypoint_convention="coco17", has_smpl=False, has_3d=False)
    write_manifest(table, str(root / "manifest"), shard_size=3)
    cfg = _cfg(root)
    from annotator.model import CliffNet

    torch.manual_seed(0)
    net = CliffNet(cfg.network, cfg.crop.size, num_betas=cfg.body_model.num_betas)
    weights = str(root / "checkpoints" / "finetune" / "model.pt")
    save_torch({"model": net.state_dict()}, weights)
    return {"root": root, "cfg": cfg, "weights": weights, "shards": manifest_shards(str(root / "manifest")),
            "keypoints": kp}


def _manifest_batch(shard: str) -> dict[str, np.ndarray]:
    """A shard's rows as the numpy batch Ray Data hands on (``read_manifest_dataset``:
    dense list columns, ``path`` = the shard file)."""
    t = dense_list_columns(read_parquet_file(shard))
    batch = {name: t.column(name).to_numpy(zero_copy_only=False) for name in t.column_names}
    batch["path"] = np.full(t.num_rows, shard, dtype=object)
    return batch


@pytest.fixture(scope="module")
def predictor(setup):
    cfg = setup["cfg"]
    return Predictor(cfg.model_dump_json(), setup["weights"], None, "cliff", infer._checkpoint_id(setup["weights"]),
                     label="cliff-unit")


@pytest.fixture(scope="module")
def predicted(setup, predictor):
    """Predictor output per shard (decoded like the pipeline's decode stage)."""
    return {s: predictor(decode_batch(_manifest_batch(s), setup["cfg"].crop)) for s in setup["shards"]}


def test_predictor_outputs_the_pseudo_gt_columns_for_every_row(setup, predictor, predicted, body_model):
    from annotator.geometry.cameras import perspective_projection
    from annotator.body.joints import select_keypoints

    assert len(setup["shards"]) == 2
    out = predicted[setup["shards"][1]]  # rows 3, 4 (missing image), 5
    n = 3
    assert list(out["sample_id"]) == [f"{DATASET}/{i}" for i in (3, 4, 5)]
    assert set(PSEUDO_GT_SCHEMA.names) <= set(out) and {"ok", "error", "reason", "path"} <= set(out)
    for name, width in PARAM_WIDTHS.items():
        assert out[name].shape == (n, width) and out[name].dtype == np.float32
    assert out["keypoints_2d"].shape == (n, 34) and out["bbox"].shape == (n, 4)
    ok = out["ok"]
    assert ok.tolist() == [True, False, True]
    assert out["reason"][1] == "missing_image" and out["error"][1]
    # the row that could not be decoded has no prediction at all
    for name in (*PARAM_WIDTHS, "keypoints_2d", "principal_point"):
        assert np.isnan(out[name][1]).all() and np.isfinite(out[name][ok]).all(), name
    assert np.isnan(out["focal_length"][1]) and np.isnan(out["err2d_px"][1])
    assert set(out["method"]) == {"cliff-unit"} and set(out["keypoint_convention"]) == {"coco17"}
    assert set(out["checkpoint_id"]) == {infer._checkpoint_id(setup["weights"])}
    assert out["checkpoint_id"][0].startswith("finetune:")
    assert set(out["body_model_checksum"]) == {body_model.checksum}
    # camera: CLIFF's default focal sqrt(w^2 + h^2) and the image centre
    np.testing.assert_allclose(out["focal_length"][ok], np.hypot(160, 120), rtol=1e-6)
    np.testing.assert_allclose(out["principal_point"][ok], [[80, 60]] * 2)
    # keypoints_2d are the body model's keypoints of the stored parameters, projected
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a[ok]))  # noqa: E731
    with torch.no_grad():
        body = body_model(t(out["global_orient"]), t(out["body_pose"]), t(out["betas"]), t(out["transl"]))
    kps = select_keypoints(body.keypoints, body_model.keypoint_names, "coco17")
    proj = perspective_projection(kps, t(out["focal_length"]), t(out["principal_point"])).numpy()
    np.testing.assert_allclose(out["keypoints_2d"][ok].reshape(-1, 17, 2), proj, rtol=1e-3, atol=0.05)
    # err2d_px: the confidence-weighted mean distance to the annotated keypoints; err2d_norm per box side
    kp = setup["keypoints"][[3, 5]]
    dist = np.linalg.norm(out["keypoints_2d"][ok].reshape(-1, 17, 2) - kp[..., :2], axis=-1)
    np.testing.assert_allclose(out["err2d_px"][ok], (dist * kp[..., 2]).sum(1) / kp[..., 2].sum(1), rtol=1e-4)
    box = decode_batch(_manifest_batch(setup["shards"][1]), setup["cfg"].crop)["box_size"][ok]
    np.testing.assert_allclose(out["err2d_norm"][ok], out["err2d_px"][ok] / box, rtol=1e-5)


def test_predictor_is_deterministic_and_a_row_without_keypoints_has_no_2d_error(setup, predictor, predicted):
    shard = setup["shards"][0]  # rows 0, 1 (no labelled keypoint), 2
    again = predictor(decode_batch(_manifest_batch(shard), setup["cfg"].crop))
    first = predicted[shard]
    for name in PARAM_WIDTHS:  # the network's answer: bit for bit
        np.testing.assert_array_equal(again[name], first[name])
    # the projection goes through the body model, whose batched matmuls are not bit-reproducible
    # from call to call on every CPU (alignment-dependent SIMD paths: 1.1e-5 px measured on a Xeon)
    for name in ("keypoints_2d", "err2d_px"):
        np.testing.assert_allclose(again[name], first[name], rtol=0, atol=1e-3)
    assert first["ok"].all()
    assert np.isnan(first["err2d_px"][1]) and np.isfinite(first["err2d_px"][[0, 2]]).all()
    assert np.isfinite(first["body_pose"]).all()  # the prediction itself exists without keypoints


def test_commit_shard_writes_sorted_ok_rows_and_rejects_exactly_once(setup, predicted, tmp_path):
    shard = setup["shards"][1]
    out = predicted[shard]
    # the rows of a shard arrive in several batches, in any order
    parts = [{k: v[[2]] for k, v in out.items()}, {k: v[[0, 1]] for k, v in out.items()}]
    out_dir, rejects_dir = str(tmp_path / "pseudo_gt"), str(tmp_path / "rejects")
    name = os.path.basename(shard)
    for attempt in range(2):  # a retried shard (actor restart, rerun) is rewritten, not appended to
        assert _commit_shard(STEP, DATASET, shard, parts, out_dir, rejects_dir) == 1
        table = pq.read_table(os.path.join(out_dir, name))
        assert table.num_rows == 2, attempt
        assert table.column("sample_id").to_pylist() == [f"{DATASET}/3", f"{DATASET}/5"]  # sorted, bad row out
        assert table.schema.equals(PSEUDO_GT_SCHEMA, check_metadata=False)
        rejects = pq.read_table(os.path.join(rejects_dir, f"{STEP}-{name}")).to_pylist()
        assert [(r["sample_id"], r["dataset"], r["reason"]) for r in rejects] == [(f"{DATASET}/4", DATASET,
                                                                                   "missing_image")]
        assert rejects[0]["detail"].startswith(f"{STEP}: ")
    assert sorted(os.listdir(out_dir)) == [name]  # one file per manifest shard, same name
    got = table.to_pydict()
    np.testing.assert_array_equal(np.stack(got["body_pose"]), out["body_pose"][[0, 2]])
    np.testing.assert_array_equal(np.asarray(got["err2d_px"], np.float32), out["err2d_px"][[0, 2]])
    # a later commit in which every row succeeded removes the shard's stale rejects file
    fixed = {k: v[[0, 2]] for k, v in out.items()}
    assert _commit_shard(STEP, DATASET, shard, [fixed], out_dir, rejects_dir) == 0
    assert not os.path.exists(os.path.join(rejects_dir, f"{STEP}-{name}"))
    assert pq.read_table(os.path.join(out_dir, name)).num_rows == 2


def test_attach_outputs_joins_by_shard_and_sample_id(setup, predicted, tmp_path):
    out_dir, rejects_dir = str(tmp_path / "prior" / DATASET), str(tmp_path / "rejects")
    first, second = setup["shards"]
    for shard in (first, second):
        _commit_shard("predict-prior", DATASET, shard, [predicted[shard]], out_dir, rejects_dir)
    # rows of both shards in one batch, not in manifest order
    batch = {k: np.concatenate([_manifest_batch(s)[k] for s in (second, first)]) for k in _manifest_batch(first)}
    ids = batch["sample_id"].tolist()
    assert ids == [f"{DATASET}/{i}" for i in (3, 4, 5, 0, 1, 2)]
    expected = {src: np.concatenate([predicted[second][src], predicted[first][src]]) for src in PARAM_WIDTHS}

    got = attach_prior(batch, {DATASET: out_dir})
    has = got["has_prior"]
    assert has.tolist() == [True, False, True, True, True, True]  # row 4 was rejected by predict-prior
    for col, src in PRIOR_SOURCE_COLUMNS.items():
        assert got[col].shape == (ROWS, PARAM_WIDTHS[src]) and got[col].dtype == np.float32
        np.testing.assert_array_equal(got[col][has], expected[src][has])
        assert not got[col][~has].any()  # no prediction: zeros, flagged False
    assert got["sample_id"].tolist() == ids and set(batch) < set(got)  # rows and the manifest columns kept

    pgt = attach_pseudo_gt(batch, {DATASET: out_dir})  # rows without pseudo-GT are dropped
    assert pgt["sample_id"].tolist() == [i for i, h in zip(ids, has) if h] and pgt["has_smpl"].all()
    assert all(len(v) == ROWS - 1 for v in pgt.values())
    np.testing.assert_array_equal(pgt["smpl_transl"], expected["transl"][has])

    single = attach_outputs(batch, {DATASET: out_dir}, {"x": "crop_cam"}, "has_x")
    np.testing.assert_array_equal(single["x"][has], expected["crop_cam"][has])
    assert single["has_x"].tolist() == has.tolist() and "has_prior" not in single


@pytest.mark.parametrize("case", ["no-output-file", "all-rows-rejected"])
def test_attach_outputs_flags_rows_of_a_shard_without_predictions(setup, predicted, tmp_path, case):
    out_dir, rejects_dir = str(tmp_path / "prior" / DATASET), str(tmp_path / "rejects")
    first, second = setup["shards"]
    _commit_shard("predict-prior", DATASET, second, [predicted[second]], out_dir, rejects_dir)
    if case == "all-rows-rejected":
        failed = {**predicted[first], "ok": np.zeros(3, bool), "reason": np.full(3, "corrupt_image", object)}
        assert _commit_shard("predict-prior", DATASET, first, [failed], out_dir, rejects_dir) == 3
        assert pq.read_table(os.path.join(out_dir, os.path.basename(first))).num_rows == 0
    batch = {k: np.concatenate([_manifest_batch(s)[k] for s in (second, first)]) for k in _manifest_batch(first)}
    got = attach_prior(batch, {DATASET: out_dir})
    assert got["has_prior"].tolist() == [True, False, True, False, False, False]


def test_the_image_and_joints_network_reads_each_rows_3d_joints_and_rejects_rows_without(setup, tmp_path):
    """``aux_annotator.kind: image``: the Predictor finds the joints input in the checkpoint, feeds
    every row its own 3D joints and rejects a row that has none (``no_3d_joints``), never guessing."""
    from annotator.body.joints import get_convention
    from annotator.model import CliffNet

    cfg = setup["cfg"]
    torch.manual_seed(0)
    net = CliffNet(cfg.network, cfg.crop.size, joints_in=17, joints_root=get_convention("coco17").root)
    weights = str(tmp_path / "annotate-aux" / "model.pt")
    save_torch({"model": net.state_dict()}, weights)
    p = Predictor(cfg.model_dump_json(), weights, None, "neuralannot-aux", infer._checkpoint_id(weights))
    assert p.net.joints_in == 17
    rng = np.random.default_rng(1)
    joints = [(rng.normal(0, 0.3, (17, 3)) + [0, 0, 4]).astype(np.float32).ravel() for _ in range(3)]

    def run(j):
        batch = _manifest_batch(setup["shards"][0])  # rows 0-2, all decodable
        batch.update(joints_3d=np.array([j[0], None, j[2]], object), has_3d=np.array([True, False, True]),
                     joints_3d_convention=np.array(["coco17", None, "coco17"], object))
        return p(decode_batch(batch, cfg.crop))

    out = run(joints)
    assert out["ok"].tolist() == [True, False, True]
    assert out["reason"][1] == "no_3d_joints" and "3D joints" in out["error"][1]
    assert np.isnan(out["body_pose"][1]).all() and np.isfinite(out["body_pose"][[0, 2]]).all()
    assert set(out["method"]) == {"neuralannot-aux"}
    other = run([joints[0] * 1.3, None, joints[2]])  # row 0's joints changed, row 2's not
    assert not np.allclose(other["body_pose"][0], out["body_pose"][0])
    np.testing.assert_allclose(other["body_pose"][2], out["body_pose"][2], atol=1e-6)
