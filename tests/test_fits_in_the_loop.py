"""SPIN's fitting in the loop without Ray: the fits dictionary's rules and one training epoch with it."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from annotator.config import NetworkConfig, SmplifyConfig, SpinConfig
from annotator.fitting.in_the_loop import FitDictionary, loop_fit_config
from annotator.fitting.smplify import FitResult, smplify
from annotator.steps.trainer import FitsInTheLoop, StepSettings, Trainer, epoch_order, initial_fits, steps_per_epoch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_trainer import _rows  # noqa: E402  (rows with exact 2D keypoints of known SMPL bodies)


def _fit(n, err, seed=0):
    g = torch.Generator().manual_seed(seed)
    return FitResult(global_orient=torch.randn(n, 3, generator=g), body_pose=torch.randn(n, 69, generator=g),
                     betas=torch.randn(n, 10, generator=g), transl=torch.randn(n, 3, generator=g),
                     err2d_px=torch.tensor(err, dtype=torch.float32), loss=torch.zeros(n))


def test_a_new_fit_replaces_an_entry_only_when_its_2d_error_is_lower():
    d = FitDictionary.from_fit([f"s{i}" for i in range(4)], _fit(4, [5.0, float("nan"), 3.0, 2.0]),
                               torch.full((4,), 100.0))
    before = d.checksum()
    new = _fit(3, [4.0, 7.0, float("nan")], seed=1)
    replaced = d.update(torch.tensor([0, 1, 2]), new)
    assert replaced.tolist() == [True, True, False]  # lower; anything beats no fit; a failed fit never replaces
    assert d.err2d_px.tolist() == [4.0, 7.0, 3.0, 2.0] and d.updates.tolist() == [1, 1, 0, 0]
    assert torch.equal(d.params["body_pose"][0], new.body_pose[0]) and torch.equal(d.params["body_pose"][1], new.body_pose[1])
    assert d.checksum() != before
    # the skip rule: 2D error within 10% of the box side and no extreme shape
    d.params["betas"][:] = 0.0
    d.params["betas"][3, 2] = 5.0  # extreme
    d.err2d_px[2] = 30.0  # 30% of the box
    assert d.usable(torch.arange(4), max_err2d_norm=0.1, max_abs_beta=3.0).tolist() == [True, True, False, False]
    d.params["transl"][0, 2] = float("nan")
    assert not d.usable(torch.tensor([0]), 0.1, 3.0).any()
    # a checkpoint round trip keeps every entry
    again = FitDictionary.from_state(d.state_dict())
    assert again.checksum() == d.checksum() and again.updates.tolist() == d.updates.tolist()


def test_merging_the_ranks_dictionaries_keeps_each_rows_best_entry():
    start = _fit(4, [5.0, 5.0, 5.0, 5.0])
    a = FitDictionary.from_fit(list("abcd"), start, torch.full((4,), 100.0))
    b = FitDictionary.from_state(a.state_dict())
    a.update(torch.tensor([0, 1]), _fit(2, [1.0, 1.0], seed=2))  # rank 0's rows of the epoch
    b.update(torch.tensor([2, 3]), _fit(2, [2.0, 9.0], seed=3))  # rank 1's (row 3: no better fit)
    a.merge([b])
    assert a.err2d_px.tolist() == [1.0, 1.0, 2.0, 5.0] and a.updates.tolist() == [1, 1, 1, 0]
    b.merge([a])
    assert b.checksum() == a.checksum()
    with pytest.raises(ValueError, match="different rows"):
        a.merge([FitDictionary.from_fit(list("wxyz"), start, torch.full((4,), 100.0))])


def test_smplify_without_a_camera_stage_starts_from_the_given_camera(body_model):
    rows, truth = _rows(body_model, n=4)
    b = rows.take(torch.arange(4), torch.device("cpu"))
    init = {"global_orient": truth["global_orient"], "body_pose": truth["body_pose"], "betas": truth["betas"],
            "transl": torch.tensor([[0.0, 0.0, 5.0]]).repeat(4, 1)}
    cfg = loop_fit_config(SmplifyConfig(), 5)
    assert cfg.camera_iters == 0 and cfg.body_iters == 5
    fit = smplify(body_model, b["keypoints_2d"], "coco17", b["focal"], b["principal_point"], init, cfg)
    assert fit.history["camera_loss"].shape == (0, 4) and fit.history["body_loss"].shape == (5, 4)
    assert float(fit.err2d_px.max()) < 2.0  # started at the truth, it stays there


def test_an_epoch_refits_every_row_never_keeps_a_worse_fit_and_checkpoints_the_dictionary(body_model, single_thread):
    from annotator.model import CliffNet

    torch.manual_seed(0)
    rows, _ = _rows(body_model, n=12)
    for key in ("has_smpl", "has_3d"):  # target rows: 2D keypoints only, the fits supervise them
        rows.tensors[key] = torch.zeros_like(rows.tensors[key])
    cpu = torch.device("cpu")
    tcfg = SpinConfig(epochs=1, batch_size=4, lr=1e-4, lr_schedule="constant", aux3d_fraction=0)
    job = SimpleNamespace(smplify=SmplifyConfig(camera_iters=3, body_iters=3))

    def trainer():
        t = Trainer(CliffNet(NetworkConfig(), 32), body_model, tcfg, StepSettings.of(tcfg, 32), cpu, total_steps=3)
        t.loop = FitsInTheLoop(body_model, loop_fit_config(job.smplify, 10), tcfg.max_fit_err2d, tcfg.max_abs_beta)
        return t

    t = trainer()
    t.loop.fits = initial_fits(t, rows, job)
    assert len(t.loop.fits) == 12 and list(t.loop.fits.sample_id) == list(rows.sample_id)
    t.loop.fits.err2d_px[:3] = 1e6  # three entries no refit can do worse than
    start = t.loop.fits.err2d_px.clone()
    m = t.epoch(rows, epoch_order(len(rows), 0, 0), steps_per_epoch(len(rows), 4))
    assert m["fits_fitted"] == 12 and m["fits_replaced"] >= 3 and m["fit_seconds"] > 0
    assert m["train_seconds_without_fits"] > 0 and 0 <= m["fits_usable_share"] <= 1
    assert bool((t.loop.fits.err2d_px <= start).all())  # an entry only ever improves
    assert t.loop.fits.updates.sum() == m["fits_replaced"]
    # the fits supervise the batch: its SMPL targets are the dictionary's, its 3D joints their keypoints
    b = t.crops(rows.take(torch.arange(4), cpu), train=False)
    sup = t.loop.supervise(b, {}, torch.arange(4), refit=False)
    usable = t.loop.fits.usable(torch.arange(4), tcfg.max_fit_err2d, tcfg.max_abs_beta)
    assert torch.equal(sup["has_smpl"].cpu(), usable) and torch.equal(sup["has_3d"].bool().cpu(), usable)
    assert torch.equal(sup["smpl_body_pose"], t.loop.fits.params["body_pose"][:4])
    # a restarted worker gets the dictionary of the checkpoint
    state = t.state_dict()
    again = trainer()
    again.load_state_dict(state)
    assert again.loop.fits.checksum() == t.loop.fits.checksum()
    assert np.array_equal(again.loop.fits.updates.numpy(), t.loop.fits.updates.numpy())
