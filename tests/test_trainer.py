"""The training step's Ray-free parts: crop cache, epoch order, schedule, one epoch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from annotator.config import CropConfig, NetworkConfig, PretrainConfig
from annotator.data import crop_cache
from annotator.data.images import load_crops
from annotator.data.manifest import columns_to_table, write_manifest
from annotator.steps.trainer import (StepSettings, Trainer, TrainRows, cycle_batches, epoch_order, lr_factor,
                                     monitor_3d, steps_per_epoch)


def _manifest(tmp_path, n=10, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(p, quality=95)
        paths.append(str(p))
    kp = np.concatenate([rng.uniform(20, 100, (n, 17, 2)), np.ones((n, 17, 1))], -1)
    table = columns_to_table(
        n, sample_id=[f"toy/{i}" for i in range(n)], dataset="toy", source="toy.json",
        image_path=[paths[i % 3] for i in range(n)], image_width=np.full(n, 160, np.int32),
        image_height=np.full(n, 120, np.int32), bbox=np.column_stack([rng.uniform(10, 60, (n, 2)), rng.uniform(20, 50, (n, 2))]),
        keypoints_2d=kp.reshape(n, -1), keypoint_convention="coco17", has_smpl=False, has_3d=False)
    return write_manifest(table, str(tmp_path / "manifest"), shard_size=4)


def test_crop_cache_holds_the_decoded_context_crops_and_keys_by_settings(tmp_path):
    from annotator.data.manifest import manifest_shards

    _manifest(tmp_path)
    shards = manifest_shards(str(tmp_path / "manifest"))
    crop = CropConfig(size=32, cache_context=1.25)
    key = crop_cache.cache_key(crop, shards)
    assert key == crop_cache.cache_key(crop, shards)
    assert key != crop_cache.cache_key(CropConfig(size=48, cache_context=1.25), shards)
    assert key != crop_cache.cache_key(CropConfig(size=32, cache_context=1.5), shards)
    out = str(tmp_path / "crops" / key / "part-00000.parquet")
    rows = crop_cache.build_shard(shards[0], out, crop)
    got = crop_cache.read_shard(out, crop)
    assert rows == len(got["sample_id"]) == 4
    from annotator.data.manifest import read_parquet_file

    t = read_parquet_file(shards[0]).to_pandas()
    fresh = load_crops(list(t["image_path"]), np.stack(t["bbox"]), 40, crop.bbox_scale * 1.25)
    assert got["img"].shape == (4, 3, 40, 40) and got["img"].dtype == np.uint8
    assert np.array_equal(got["img"], fresh.images)
    assert np.allclose(got["box_size"] * 1.25, fresh.box_size) and np.allclose(got["affine"], fresh.affine)
    assert list(got["sample_id"]) == list(t["sample_id"])
    (tmp_path / "crops" / "oldkey").mkdir()
    stale = crop_cache.stale_caches(str(tmp_path / "crops"), key)
    assert [s.rsplit("/", 1)[-1] for s in stale] == ["oldkey"]
    assert crop_cache.bytes_per_crop(CropConfig(size=224, cache_context=1.25)) == 3 * 280 * 280


@pytest.mark.parametrize("n,world", [(10, 1), (11, 2), (7, 3)])
def test_epoch_order_deals_every_row_to_exactly_one_rank(n, world):
    parts = [epoch_order(n, seed=4, epoch=2, rank=r, world=world) for r in range(world)]
    assert sorted(torch.cat(parts).tolist()) == list(range(n))
    assert not torch.equal(epoch_order(n, 4, 2), epoch_order(n, 4, 3))  # reshuffled every epoch
    batch = 3
    assert all(steps_per_epoch(n, batch, world) * batch >= len(p) for p in parts)


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.01 + 0.99 * 0.5, abs=1e-6)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.01)
    assert lr_factor(80, 100, 0, "constant") == 1.0


def _rows(body_model, n=16, seed=0):
    from annotator.body.joints import select_keypoints
    from annotator.geometry.cameras import perspective_projection

    g = torch.Generator().manual_seed(seed)
    go = torch.tensor([[np.pi, 0.0, 0.0]]).repeat(n, 1) + 0.3 * torch.randn(n, 3, generator=g)
    bp = 0.2 * torch.randn(n, 69, generator=g)
    o = body_model(global_orient=go, body_pose=bp, betas=torch.zeros(n, 10), transl=torch.tensor([[0.0, 0.0, 5.0]]).repeat(n, 1))
    j = select_keypoints(o.keypoints, body_model.keypoint_names, "coco17")
    kp = perspective_projection(j, torch.full((n,), 400.0), torch.tensor([[80.0, 60.0]]).repeat(n, 1))
    cols = {
        "sample_id": np.array([f"t/{i}" for i in range(n)], dtype=object),
        "img": np.random.default_rng(seed).integers(0, 255, (n, 3, 40, 40), dtype=np.uint8),
        "center": np.tile([[80.0, 60.0]], (n, 1)).astype(np.float32), "box_size": np.full(n, 140.0, np.float32),
        "affine": np.tile([[[40 / 175, 0, -(80 - 87.5) * 40 / 175 - 0], [0, 40 / 175, -(60 - 87.5) * 40 / 175]]], (n, 1, 1)).astype(np.float32),
        "image_width": np.full(n, 160), "image_height": np.full(n, 120), "focal_length": np.full(n, 400.0),
        "keypoints_2d": np.concatenate([kp.numpy(), np.ones((n, 17, 1), np.float32)], -1).reshape(n, -1),
        "keypoint_convention": np.array(["coco17"] * n, dtype=object),
        "joints_3d": j.numpy().reshape(n, -1), "joints_3d_convention": np.array(["coco17"] * n, dtype=object),
        "has_3d": np.ones(n, bool),
        "smpl_global_orient": go.numpy(), "smpl_body_pose": bp.numpy(), "smpl_betas": np.zeros((n, 10), np.float32), "smpl_transl": np.tile([[0.0, 0.0, 5.0]], (n, 1)),
        "has_smpl": np.ones(n, bool),
    }
    return TrainRows(cols), {"global_orient": go, "body_pose": bp, "betas": torch.zeros(n, 10)}


def test_trainer_epoch_learns_and_a_zero_weight_step_adds_no_gradient(body_model, single_thread):
    from annotator.model import CliffNet

    torch.manual_seed(0)
    rows, truth = _rows(body_model)
    net = CliffNet(NetworkConfig(), 32)
    tcfg = PretrainConfig(epochs=1, batch_size=8, lr=3e-4, lr_schedule="constant")
    t = Trainer(net, body_model, tcfg, StepSettings("pretrain", 32), torch.device("cpu"), total_steps=20)
    losses = [t.epoch(rows, epoch_order(len(rows), 0, e), steps_per_epoch(len(rows), 8)) for e in range(10)]
    assert np.mean([m["loss"] for m in losses[-3:]]) < 0.8 * losses[0]["loss"]
    assert losses[0]["samples"] == len(rows) and t.step_count == 20
    # a rank that ran out of rows steps with weight 0: it must add nothing to the DDP gradient average
    t.step([rows.take(torch.arange(2), torch.device("cpu"))], weight=0.0)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(float(g.abs().max()) == 0.0 for g in grads)
    m = monitor_3d(t, rows, truth)
    assert m["rows"] == len(rows) and np.isfinite(m["pa_mpjpe"]) and 0 <= m["orient_median_deg"] <= 180


def test_a_mixed_batch_is_one_forward_pass_with_the_gradient_of_the_joined_batch(body_model, single_thread):
    """A finetune batch is target rows + aux3d rows. Batch norm must see them together, as its
    running statistics do at inference: the step's gradient equals the gradient of one batch of
    all rows, and the network runs once per step."""
    import copy

    from annotator.model import CliffNet

    torch.manual_seed(0)
    rows, _ = _rows(body_model)
    net = CliffNet(NetworkConfig(), 32)
    tcfg = PretrainConfig(epochs=1, batch_size=8, lr=1e-4, lr_schedule="constant", grad_clip=1e9)
    cpu = torch.device("cpu")
    grads = []
    for parts in ([rows.take(torch.arange(0, 5), cpu), rows.take(torch.arange(5, 8), cpu)],
                  [rows.take(torch.arange(0, 8), cpu)]):
        n = copy.deepcopy(net)
        bn = next(m for m in n.modules() if isinstance(m, torch.nn.BatchNorm2d))
        seen = []
        bn.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
        torch.manual_seed(1)  # the same dropout masks
        Trainer(n, body_model, tcfg, StepSettings("pretrain", 32), cpu, total_steps=1).step(parts)
        assert seen == [8]
        grads.append(torch.cat([p.grad.flatten() for p in n.parameters() if p.grad is not None]))
    assert grads[0].abs().max() > 0
    # float32 round-off of a 13M-parameter gradient: within 1e-5 of its largest entry (a separate
    # batch-norm pass per part differs by orders of magnitude more)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5 * float(grads[0].abs().max()))


def test_the_rows_trained_across_ranks_are_every_row_once(body_model, single_thread):
    """What the several-worker check gathers (``Trainer.trained_rows``): over the ranks of one
    epoch, every main row is trained on exactly once; a rank's zero-weight padding step (it ran
    out of rows one step early) adds none. Finetune-style batches (main + aux rows)."""
    from annotator.model import CliffNet

    torch.manual_seed(0)
    rows, _ = _rows(body_model, n=13)  # rank 0: 7 rows in 4 steps (2, 2, 2, 1); rank 1: 6, then a padding step
    world, batch, n_aux = 2, 4, 2
    tcfg = PretrainConfig(epochs=1, batch_size=batch, lr=1e-4, lr_schedule="constant")
    trained = []
    for rank in range(world):
        t = Trainer(CliffNet(NetworkConfig(), 32), body_model, tcfg, StepSettings("pretrain", 32),
                    torch.device("cpu"), total_steps=10)
        aux = cycle_batches(rows, n_aux, 0, torch.device("cpu"), rank, world)
        t.epoch(rows, epoch_order(len(rows), 0, 0, rank, world), steps_per_epoch(len(rows), batch - n_aux, world),
                aux, n_aux)
        trained.append(t.trained_rows)
    assert [len(r) for r in trained] == [7, 6]
    assert sorted(torch.cat(trained).tolist()) == list(range(len(rows)))


def test_a_last_batch_of_one_row_trains_without_aux_rows(body_model, single_thread):
    """Batch norm cannot train on one row: an epoch whose last batch (or a rank's padding step)
    has a single main row and no aux rows borrows a second row, and still counts each row once."""
    from annotator.model import CliffNet

    torch.manual_seed(0)
    rows, _ = _rows(body_model, n=5)  # batches of 4: (4, 1); two ranks: rank 0 (2, 1), rank 1 (2, padding)
    tcfg = PretrainConfig(epochs=1, batch_size=4, lr=1e-4, lr_schedule="constant")
    t = Trainer(CliffNet(NetworkConfig(), 32), body_model, tcfg, StepSettings("pretrain", 32), torch.device("cpu"),
                total_steps=2)
    out = t.epoch(rows, epoch_order(len(rows), 0, 0), steps_per_epoch(len(rows), 4))
    assert sorted(t.trained_rows.tolist()) == list(range(5)) and np.isfinite(out["loss"])
    assert out["samples"] == 6  # 4 + the last row with its borrowed partner
    trained = []
    for rank in range(2):
        t = Trainer(CliffNet(NetworkConfig(), 32), body_model, tcfg.model_copy(update={"batch_size": 2}),
                    StepSettings("pretrain", 32), torch.device("cpu"), total_steps=2)
        t.epoch(rows, epoch_order(len(rows), 0, 0, rank, 2), steps_per_epoch(len(rows), 2, 2))
        trained.append(t.trained_rows)
    assert sorted(torch.cat(trained).tolist()) == list(range(5))
