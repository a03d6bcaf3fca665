"""The training step's math, free of Ray: in-memory rows, batches, one optimiser step, an
epoch, the learning-rate schedule and the per-epoch held-out 3D monitor.

:func:`annotator.steps.train.train_loop` (on every Ray Train worker) and the benchmarks
call the same functions, so what the benchmark measures is what the step runs.

Rows come from the crop cache (:mod:`annotator.data.crop_cache`): manifest columns plus a
uint8 *context* crop per row. :class:`TrainRows` turns them into the model's batch
contract once (:func:`annotator.data.batching.to_model_batch`), so a batch is a tensor
index, and :func:`annotator.data.augment.augment_batch` makes the network crop of each
row on the fly (identity parameters when augmentation is off).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from annotator.data.augment import AugmentParams, augment_batch
from annotator.body.joints import TRAIN_CONVENTION
from annotator.data.batching import to_model_batch
from annotator.data.images import normalize_images
from annotator.model.cliff import net_inputs
from annotator.model.losses import compute_losses
from annotator.model.outputs import decode, smpl_joint_targets


class TrainRows:
    """Rows of one role (cached crops + manifest columns) as model-batch tensors.

    ``columns``: numpy columns of the rows (``img`` (N, 3, Sc, Sc) uint8 context crops and
    the manifest/attached columns). Rows with ``ok = False`` are dropped."""

    def __init__(self, columns: dict[str, np.ndarray], body=None):
        ok = np.asarray(columns.get("ok", np.ones(len(columns["sample_id"]), bool)), dtype=bool)
        cols = {k: v[ok] for k, v in columns.items()} if not ok.all() else dict(columns)
        self.images = torch.from_numpy(np.ascontiguousarray(cols.pop("img")))
        self.sample_id = np.asarray(cols["sample_id"])
        stub = np.zeros((len(self.sample_id), 3, 1, 1), np.uint8)
        self.tensors = to_model_batch({**cols, "img": stub})
        self.tensors.pop("img")
        if body is not None:  # pseudo-GT rows: their 3D joints from the body model, once
            self.tensors = smpl_joint_targets(self.tensors, body, TRAIN_CONVENTION)

    def __len__(self) -> int:
        return len(self.sample_id)

    def take(self, index: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        """The batch of rows ``index`` with normalised context crops in ``img``."""
        out = {k: v[index].to(device) for k, v in self.tensors.items()}
        out["img"] = normalize_images(self.images[index], device)
        return out


def epoch_order(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's rows of one epoch: a seeded permutation of ``range(n)``, dealt out so
    that every row goes to exactly one rank."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)[rank::world]


def steps_per_epoch(n: int, batch: int, world: int = 1) -> int:
    """Optimiser steps of one epoch, the same on every rank (the rank with most rows)."""
    return math.ceil(math.ceil(n / world) / batch) if n else 0


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then constant or
    cosine decay to 1% at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class StepSettings:
    """What one optimiser step needs to know beyond the batch."""

    mode: str  # "pretrain" (full supervision) or "finetune"
    crop_size: int
    augment: object | None = None  # AugmentConfig or None
    reprojection: str = "full"
    use_prior_reg: bool = True

    @classmethod
    def of(cls, tcfg, crop_size: int) -> "StepSettings":
        """The settings of a step from its training config (:class:`~annotator.config.TrainBase`):
        its loss mode, and for a finetune whether it regularises towards the prior."""
        return cls(mode=tcfg.loss_mode, crop_size=crop_size, augment=tcfg.augment, reprojection=tcfg.reprojection,
                   use_prior_reg=bool(getattr(tcfg, "use_prior_reg", False)))


class Trainer:
    """One network, its optimiser and schedule, and the losses of a step (no Ray)."""

    def __init__(self, net, body, tcfg, settings: StepSettings, device: torch.device, total_steps: int,
                 vposer=None, autocast=None, scaler=None, seed: int = 0):
        self.net, self.body, self.tcfg, self.s = net, body, tcfg, settings
        self.device, self.vposer = device, vposer
        self.opt = torch.optim.Adam(net.parameters(), lr=tcfg.lr)
        self.total_steps, self.step_count, self.skipped_steps = total_steps, 0, 0
        self.autocast = autocast or (lambda: torch.autocast(device_type=device.type, enabled=False))
        self.scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
        self.gen = torch.Generator().manual_seed(seed)
        self.trained_rows = torch.zeros(0, dtype=torch.long)  # main-row indices of the last epoch's steps
        self.loop: FitsInTheLoop | None = None  # method spin: SMPLify in the loop and its dictionary

    def state_dict(self) -> dict:
        out = {"optimizer": self.opt.state_dict(), "step_count": self.step_count, "rng": self.gen.get_state()}
        if self.loop is not None and self.loop.fits is not None:
            out["fits"] = self.loop.fits.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        from annotator.fitting.in_the_loop import FitDictionary

        self.opt.load_state_dict(state["optimizer"])
        self.step_count = int(state.get("step_count", 0))
        if "rng" in state:
            self.gen.set_state(state["rng"])
        if "fits" in state and self.loop is not None:
            self.loop.fits = FitDictionary.from_state(state["fits"])

    def crops(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        """Network crops of a batch of context crops (augmented when training with it on)."""
        n = batch["img"].shape[0]
        aug = self.s.augment if train and self.s.augment is not None and self.s.augment.enabled else None
        params = AugmentParams.sample(n, aug, self.gen, self.device) if aug else AugmentParams.identity(n, self.device)
        out = augment_batch(batch, params, self.s.crop_size,
                            colour=aug.colour if aug else 0.0, occlusion_prob=aug.occlusion_prob if aug else 0.0,
                            generator=self.gen)
        if out["img"].is_cuda:
            out["img"] = out["img"].contiguous(memory_format=torch.channels_last)
        return out

    def step(self, parts: list[dict[str, torch.Tensor]], weight: float = 1.0,
             main_index: torch.Tensor | None = None) -> dict[str, float]:
        """One optimiser step on the parts of a mixed batch (row-weighted mean loss).
        ``weight`` 0 runs the step without learning from it (keeps DDP ranks in lockstep).
        ``main_index``: the main rows of ``parts[0]`` (with :attr:`loop`, the dictionary rows
        that SMPLify refits from this batch's predictions and that supervise it)."""
        for g in self.opt.param_groups:
            g["lr"] = self.tcfg.lr * lr_factor(self.step_count, self.total_steps, self.tcfg.warmup_steps,
                                               self.tcfg.lr_schedule)
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        batches = [self.crops(raw, train=True) for raw in parts]
        sizes = [b["img"].shape[0] for b in batches]
        n_rows = sum(sizes)
        # One forward pass over the whole mixed batch: batch norm sees the parts together,
        # as its running statistics (used at inference) will. A forward per part normalised
        # target rows with target-only statistics in training and with the mixed running
        # statistics afterwards (a correctness fix: on the bench its effect was inside noise,
        # README "finetune").
        inputs = [net_inputs(b, self.net) for b in batches]
        if any(set(i) != set(inputs[0]) for i in inputs):
            raise KeyError(f"Trainer.step: the parts of a mixed batch carry different network inputs "
                           f"{[sorted(i) for i in inputs]}")
        with self.autocast():
            pred_all = self.net(**{k: torch.cat([i[k] for i in inputs]) for k in inputs[0]})
        loss_total = 0.0
        terms_acc: dict[str, float] = {}
        start = 0
        for i, (b, n) in enumerate(zip(batches, sizes)):
            pred = {k: v[start:start + n] for k, v in pred_all.items()}
            start += n
            dec = decode(pred, b, self.body, convention=TRAIN_CONVENTION, reprojection=self.s.reprojection)
            if i == 0 and self.loop is not None and main_index is not None:
                b = self.loop.supervise(b, dec, main_index, refit=weight > 0)
            loss, terms = compute_losses(pred, dec, b, self.tcfg.loss, mode=self.s.mode,
                                         reprojection=self.s.reprojection, vposer=self.vposer,
                                         use_prior_reg=self.s.use_prior_reg)
            w = n / n_rows
            loss_total = loss_total + loss * w
            for k, v in terms.items():
                terms_acc[k] = terms_acc.get(k, 0.0) + float(v) * w
        self.scaler.scale(loss_total * weight).backward()
        self.scaler.unscale_(self.opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.tcfg.grad_clip)
        if torch.isfinite(grad_norm):  # a non-finite gradient (a degenerate camera) skips the step
            self.scaler.step(self.opt)
        else:
            self.skipped_steps += 1
        self.scaler.update()
        self.step_count += 1
        return terms_acc

    def epoch(self, main: TrainRows, order: torch.Tensor, steps: int, aux: Iterator | None = None,
              n_aux: int = 0) -> dict[str, float]:
        """One pass over ``main`` rows in ``order`` (this rank's), ``steps`` optimiser steps,
        each with ``n_aux`` rows from the ``aux`` batch iterator mixed in. ``trained_rows``: the
        ``main`` indices the epoch's learning steps used (the several-worker check reads it)."""
        n_main = max(1, self.tcfg.batch_size - n_aux)
        if self.loop is not None:
            self.loop.stats = dict.fromkeys(self.loop.stats, 0.0)
        sums: dict[str, float] = {}
        count = 0
        trained: list[torch.Tensor] = []
        t0 = time.monotonic()
        for i in range(steps):
            idx = order[i * n_main:(i + 1) * n_main]
            weight = 1.0
            if len(idx) == 0:  # this rank ran out one step early: a step that learns nothing
                idx, weight = order[:1], 0.0
            mixed = aux is not None and n_aux > 0
            # batch norm in training mode needs two rows: a last batch of one row (and no aux rows)
            # borrows another row of this epoch (the same one if the rank has only one)
            batch_idx = torch.cat([idx, order[1:2] if len(order) > 1 and order[0] == idx[0] else order[:1]]) \
                if len(idx) == 1 and not mixed else idx
            parts = [main.take(batch_idx, self.device)]
            if mixed:
                parts.append(next(aux))
            terms = self.step(parts, weight, main_index=batch_idx)
            if weight:
                trained.append(idx)
            rows = sum(p["img"].shape[0] for p in parts) if weight else 0
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * rows
            count += rows
        out = {("loss" if k == "total" else k): v / max(count, 1) for k, v in sums.items()}
        out.update(samples=count, samples_per_s=count / max(time.monotonic() - t0, 1e-9),
                   lr=self.opt.param_groups[0]["lr"], skipped_steps=self.skipped_steps)
        if self.loop is not None:
            out.update(self.loop.epoch_metrics())
            out["train_seconds_without_fits"] = time.monotonic() - t0 - out["fit_seconds"]
        self.trained_rows = torch.cat(trained) if trained else order[:0]
        return out


class FitsInTheLoop:
    """SPIN's fitting in the loop for one :class:`Trainer` (see :mod:`annotator.fitting.in_the_loop`):
    the dictionary, the in-the-loop SMPLify settings, the skip rule and the epoch's fit statistics."""

    def __init__(self, body, fit_cfg, max_err2d: float, max_abs_beta: float, vposer=None, sync=None):
        self.body, self.fit_cfg, self.vposer = body, fit_cfg, vposer
        self.max_err2d, self.max_abs_beta = max_err2d, max_abs_beta
        self.fits = None  # FitDictionary: set by initial_fits or a checkpoint
        self.sync = sync or (lambda: None)  # a device sync before reading the clock (CUDA)
        self.stats = {"fit_seconds": 0.0, "fits_fitted": 0.0, "fits_replaced": 0.0, "fits_usable": 0.0,
                      "fits_rows": 0.0}

    def supervise(self, batch: dict[str, torch.Tensor], decoded: dict[str, torch.Tensor], index: torch.Tensor,
                  refit: bool = True) -> dict[str, torch.Tensor]:
        """Refit the batch's rows from the network's predictions (``refit``), keep the better fits,
        and return the batch with the dictionary's usable fits as its SMPL and 3D joint targets."""
        from annotator.fitting.in_the_loop import fit_from_network

        if refit:
            self.sync()
            t0 = time.monotonic()
            fit = fit_from_network(self.body, decoded, batch, self.fit_cfg, TRAIN_CONVENTION, self.vposer)
            replaced = self.fits.update(index, fit)
            self.sync()
            self.stats["fit_seconds"] += time.monotonic() - t0
            self.stats["fits_fitted"] += len(index)
            self.stats["fits_replaced"] += float(replaced.sum())
        usable = self.fits.usable(index, self.max_err2d, self.max_abs_beta).to(batch["keypoints_2d"].device)
        params = self.fits.take(index, batch["keypoints_2d"].device)
        if refit:
            self.stats["fits_usable"] += float(usable.sum())
            self.stats["fits_rows"] += len(index)
        out = dict(batch)
        out["smpl_global_orient"], out["smpl_body_pose"], out["smpl_betas"] = (
            params["global_orient"], params["body_pose"], params["betas"])
        out["has_smpl"] = usable
        out["has_3d"] = torch.zeros_like(usable)
        return smpl_joint_targets(out, self.body, TRAIN_CONVENTION)

    def epoch_metrics(self) -> dict[str, float]:
        st = self.stats
        return {"fit_seconds": st["fit_seconds"], "fits_fitted": int(st["fits_fitted"]),
                "fits_replaced": int(st["fits_replaced"]),
                "fits_usable_share": st["fits_usable"] / max(st["fits_rows"], 1.0),
                "fits_err2d_px": float(torch.nanmean(self.fits.err2d_px)), "fits_checksum": self.fits.checksum()}


@torch.no_grad()
def initial_fits(trainer: Trainer, rows: TrainRows, cfg, lifter=None, vposer=None, batch: int = 128):
    """The dictionary's start (SPIN): SMPLify with the job's ``smplify`` settings, started as
    ``method: smplify`` starts it (``smplify.init``), from the network's un-augmented predictions."""
    from annotator.fitting.in_the_loop import FitDictionary
    from annotator.fitting.smplify import FitResult, smplify
    from annotator.steps.infer import smplify_init

    net = getattr(trainer.net, "module", trainer.net)
    net.eval()
    parts, boxes = [], []
    for s in range(0, len(rows), batch):
        b = trainer.crops(rows.take(torch.arange(s, min(len(rows), s + batch)), trainer.device), train=False)
        with trainer.autocast():
            pred = net(**net_inputs(b, net))
        dec = decode({k: v.float() for k, v in pred.items()}, b, trainer.body, convention=TRAIN_CONVENTION)
        init = smplify_init(cfg, dec, b, trainer.body, lifter)
        parts.append(smplify(trainer.body, b["keypoints_2d"].float(), TRAIN_CONVENTION, b["focal"].float(),
                             b["principal_point"].float(), init, cfg.smplify, vposer=vposer))
        boxes.append(b["box_size"])
    net.train()
    cat = FitResult(**{k: torch.cat([getattr(p, k) for p in parts]) for k in
                       ("global_orient", "body_pose", "betas", "transl", "err2d_px", "loss")})
    return FitDictionary.from_fit(rows.sample_id, cat, torch.cat(boxes))


@torch.no_grad()
def monitor_fits(fits, body, rows: TrainRows, truth: dict[str, torch.Tensor], device) -> dict[str, float] | None:
    """The dictionary's 3D error on the monitor rows it holds (SPIN supp. Tab. 3: the fits improve
    during training), scored as :func:`monitor_3d` scores the network."""
    from annotator.body.joints import get_convention, select_keypoints
    from annotator.evaluation.metrics import mpjpe, orientation_error_deg, pa_mpjpe

    idx, found = fits.lookup(rows.sample_id)
    if not found.any():
        return None
    p = fits.take(torch.from_numpy(idx[found]), device)
    keep = torch.from_numpy(np.nonzero(found)[0])
    gt = {k: v[keep].to(device) for k, v in truth.items()}

    def joints(params):
        out = body(global_orient=params["global_orient"], body_pose=params["body_pose"], betas=params["betas"])
        return select_keypoints(out.keypoints, body.keypoint_names, TRAIN_CONVENTION) * 1000

    pj, gj = joints(p), joints(gt)
    root = list(get_convention(TRAIN_CONVENTION).root)
    return {"mpjpe": float(mpjpe(pj, gj, root=root).mean()), "pa_mpjpe": float(pa_mpjpe(pj, gj).mean()),
            "orient_median_deg": float(orientation_error_deg(p["global_orient"], gt["global_orient"]).median()),
            "rows": int(found.sum())}


def cycle_batches(rows: TrainRows, batch: int, seed: int, device: torch.device, rank: int = 0,
                  world: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches of ``rows`` (reshuffled each pass): the aux3d half of finetune batches."""
    k = 0
    while True:
        order = epoch_order(len(rows), seed + 7, k, rank, world)
        if len(order) < batch:
            order = order.repeat(math.ceil(batch / max(len(order), 1)))
        for i in range(0, len(order) - batch + 1, batch):
            yield rows.take(order[i:i + batch], device)
        k += 1


@torch.no_grad()
def monitor_3d(trainer: Trainer, rows: TrainRows, truth: dict[str, torch.Tensor], batch: int = 128) -> dict[str, float]:
    """3D error of the network on ``rows`` against SMPL ``truth`` (``global_orient``,
    ``body_pose``, ``betas`` (N, ...)): MPJPE, PA-MPJPE (mm, COCO-17, mid-hip aligned) and
    the median global-orientation error (degrees). The learning curve's points."""
    from annotator.body.joints import get_convention, select_keypoints
    from annotator.evaluation.metrics import mpjpe, orientation_error_deg, pa_mpjpe

    # The bare module: only rank 0 monitors, and a DDP-wrapped forward is a collective
    # (it broadcasts the batch-norm buffers) that the other ranks never join.
    net, body = getattr(trainer.net, "module", trainer.net), trainer.body
    net.eval()
    root = list(get_convention(TRAIN_CONVENTION).root)
    errs = {"mpjpe": [], "pa_mpjpe": [], "orient": []}
    for s in range(0, len(rows), batch):
        idx = torch.arange(s, min(len(rows), s + batch))
        b = trainer.crops(rows.take(idx, trainer.device), train=False)
        with trainer.autocast():
            pred = net(**net_inputs(b, net))
        dec = decode(pred, b, body, convention=TRAIN_CONVENTION)
        gt = {k: v[idx].to(trainer.device) for k, v in truth.items()}
        go = body(global_orient=gt["global_orient"], body_pose=gt["body_pose"], betas=gt["betas"])
        gj = select_keypoints(go.keypoints, body.keypoint_names, TRAIN_CONVENTION) * 1000
        pj = dec["keypoints_3d"] * 1000
        errs["mpjpe"].append(mpjpe(pj, gj, root=root).cpu())
        errs["pa_mpjpe"].append(pa_mpjpe(pj, gj).cpu())
        errs["orient"].append(orientation_error_deg(dec["global_orient"], gt["global_orient"]).cpu())
    net.train()
    cat = {k: torch.cat(v) for k, v in errs.items()}
    return {"mpjpe": float(cat["mpjpe"].mean()), "pa_mpjpe": float(cat["pa_mpjpe"].mean()),
            "orient_median_deg": float(cat["orient"].median()), "rows": len(rows)}


__all__ = ["TrainRows", "Trainer", "StepSettings", "FitsInTheLoop", "initial_fits", "monitor_fits", "epoch_order", "steps_per_epoch", "lr_factor",
           "cycle_batches", "monitor_3d"]
