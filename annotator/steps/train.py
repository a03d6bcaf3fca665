"""Steps ``pretrain`` and ``finetune``: the CLIFF network trained on Ray Train.

* pretrain (CLIFF Sec. 3.4 step 1): full supervision on ``aux3d`` data - SMPL parameter,
  3D joint and full-frame 2D reprojection losses (Eq. 8-10).
* finetune (step 3; NeuralAnnot Alg. 1): continue from the pretrained weights on the
  ``target`` data: confidence-weighted full-frame 2D keypoint loss, regularisation towards
  the stored prior predictions, VPoser latent L2 and shape L2; every batch mixes target
  rows with ``aux3d`` rows (``aux3d_fraction``, NeuralAnnot: half and half).
* train-estimator (NeuralAnnot's indirect error): a new network of the same architecture,
  from scratch, fully supervised on ``aux3d`` + the targets' pseudo-GT as if it were ground
  truth (SMPL parameters, their 3D joints, and the annotated 2D keypoints).
* train-spin (``method: spin``; SPIN Sec. 3.5): from the pretrained weights on the ``target``
  data with SMPLify in the loop (:class:`~annotator.steps.trainer.FitsInTheLoop`): supervised by
  a per-row dictionary of the best fits (checkpointed with the network), mixed with aux3d rows;
  the final dictionary is written under ``fits/`` (:func:`annotator.steps.infer.write_fits`).
* train-second-round (NeuralAnnot supp. Sec. 8): the same recipe on the first round's
  pseudo-GT (``first_round/``), settings in ``second_round:``.

Ray Train (``TorchTrainer``) runs :func:`train_loop` on each worker with DDP; inputs are
Ray Datasets (manifest shards -> CPU decode+crop tasks) split across workers. Each epoch
(``checkpoint_every_epochs``) rank 0 reports a checkpoint under
``<run>/checkpoints/<step>/``; a worker failure restarts the loop from the latest one
(``FailureConfig(max_failures)``), and a re-submitted job resumes from it as well.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from annotator import storage
from annotator.config import MixedBatches
from annotator.steps.base import StepContext

log = logging.getLogger("annotator")

CHECKPOINT_FILE = "state.pt"


# --------------------------------------------------------------------------- worker side
def train_loop(loop_cfg: dict) -> None:
    """Runs on every Ray Train worker: the rows of its roles from the crop cache, then
    :class:`~annotator.steps.trainer.Trainer` epochs; rank 0 reports checkpoints and the
    learning curve (3D error of a held-out aux3d slice and of the target, where truth exists)."""
    import ray.train
    import ray.train.torch

    from annotator.body import load_body_model
    from annotator.body.prior import load_vposer
    from annotator.steps.runtime import autocast, load_network, run_body_model_config, worker_config
    from annotator.steps.trainer import (FitsInTheLoop, StepSettings, Trainer, cycle_batches, epoch_order, initial_fits,
                                         monitor_3d, monitor_fits, steps_per_epoch)

    cfg = worker_config(loop_cfg["job"])
    step = loop_cfg["step"]
    tcfg = train_settings(cfg, step)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(tcfg.seed + rank)
    device = ray.train.torch.get_device()

    body = load_body_model(run_body_model_config(cfg, loop_cfg["body_model_path"]), device=device)
    net = load_network(cfg, loop_cfg.get("init_weights"), device, joints_in=loop_cfg.get("joints_in"))
    if loop_cfg.get("lifter_path") and net.lifter is None:
        from annotator.steps.prepare import load_lifter

        net.attach_lifter(load_lifter(loop_cfg["lifter_path"]).to(device))
    if loop_cfg.get("ik_path") and net.ik is None:  # the aux-set annotator starts from the IK network's answer
        from annotator.fitting.cli import load_ik

        net.attach_ik(load_ik(loop_cfg["ik_path"])[0].to(device))
    def frozen_vposer():
        v = load_vposer(loop_cfg["vposer_path"]).to(device).eval()
        for p in v.parameters():
            p.requires_grad_(False)
        return v

    vposer = None
    if tcfg.loss_mode == "finetune" and loop_cfg.get("vposer_path") and tcfg.loss.pose_prior > 0:
        vposer = frozen_vposer()
    spin = TRAINING_STEPS[step].fits_in_the_loop  # SPIN: SMPLify in the loop, with method smplify's pose prior
    fit_vposer = frozen_vposer() if spin and loop_cfg.get("vposer_path") else None

    roles = loop_cfg["roles"]
    main = load_rows(roles["main"], cfg, body)
    aux = load_rows(roles["aux"], cfg, body) if roles.get("aux") else None
    n_aux = int(round(tcfg.batch_size * tcfg.aux3d_fraction)) if aux is not None and len(aux) else 0  # mixed steps only
    n_main = max(1, tcfg.batch_size - n_aux)
    spe = steps_per_epoch(len(main), n_main, world)
    monitors = {name: load_rows(spec, cfg, body, with_truth=True) for name, spec in roles.get("monitor", {}).items()} \
        if rank == 0 else {}

    settings = StepSettings.of(tcfg, cfg.crop.size)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    trainer = Trainer(net, body, tcfg, settings, device, total_steps=spe * tcfg.epochs, vposer=vposer,
                      autocast=lambda: autocast(cfg, device), scaler=scaler, seed=tcfg.seed * 1000 + rank)
    if spin:
        from annotator.fitting.in_the_loop import loop_fit_config

        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
        trainer.loop = FitsInTheLoop(body, loop_fit_config(cfg.smplify, tcfg.fit_iters), tcfg.max_fit_err2d,
                                     tcfg.max_abs_beta, vposer=fit_vposer, sync=sync)
    start_epoch, curve, init_fit_seconds = 0, [], 0.0
    state = _newest_state(ray.train.get_checkpoint(), loop_cfg.get("ckpt_dir"))
    if state is not None:
        net.load_state_dict(state["model"])
        trainer.load_state_dict(state["trainer"])  # with spin: the fits dictionary as it was checkpointed
        start_epoch, curve = int(state["epoch"]) + 1, list(state.get("curve", []))
    if spin and trainer.loop.fits is None:  # a first start: the static fits (method smplify's) start the dictionary
        from annotator.steps.prepare import load_lifter

        lifter = load_lifter(loop_cfg["fit_lifter_path"]).to(device) if loop_cfg.get("fit_lifter_path") else None
        t0 = time.monotonic()
        trainer.loop.fits = initial_fits(trainer, main, cfg, lifter=lifter, vposer=fit_vposer)
        init_fit_seconds = time.monotonic() - t0
        if rank == 0:
            point = {"epoch": -1, "steps": 0, "fit_seconds": init_fit_seconds,
                     "fits_err2d_px": float(torch.nanmean(trainer.loop.fits.err2d_px))}
            for name, (rows, truth) in monitors.items():
                if name == "target" and len(rows):
                    point["fits"] = monitor_fits(trainer.loop.fits, body, rows, truth, device)
            curve.append(point)  # epoch -1: the initial dictionary
    if TRAINING_STEPS[step].reads_joints and rank == 0 and state is None and monitors:
        # the aux-set annotator's starting point (the IK network's answer with aux_image.init: ik), before training
        curve.append({"epoch": -1, "steps": 0, **{name: monitor_3d(trainer, rows, truth)
                                                  for name, (rows, truth) in monitors.items() if len(rows)}})
    fits_at_start = trainer.loop.fits.checksum() if spin else None
    trainer.net = ray.train.torch.prepare_model(net)
    aux_iter = cycle_batches(aux, n_aux, tcfg.seed, device, rank, world) if n_aux else None

    for epoch in range(start_epoch, tcfg.epochs):
        t0 = time.monotonic()
        metrics = trainer.epoch(main, epoch_order(len(main), tcfg.seed, epoch, rank, world), spe, aux_iter, n_aux)
        if spin and world > 1:  # every row was refitted by one rank: keep the best entry of every rank
            merge_fits(trainer.loop.fits)
            metrics["fits_checksum"] = trainer.loop.fits.checksum()
        train_s = time.monotonic() - t0
        point = {"epoch": epoch, "steps": trainer.step_count, "loss": metrics.get("loss")}
        if spin:
            point.update({k: metrics[k] for k in ("fit_seconds", "train_seconds_without_fits", "fits_replaced",
                                                   "fits_usable_share", "fits_err2d_px", "fits_checksum")})
            metrics.update(fits_at_start=fits_at_start, init_fit_seconds=init_fit_seconds)
        if world > 1:
            point["ranks"] = ranks_check(trainer.net, trainer.trained_rows, len(main), rank)
        if rank == 0:
            for name, (rows, truth) in monitors.items():
                if len(rows):  # a tiny set may hold no held-out row
                    point[name] = monitor_3d(trainer, rows, truth)
                    if spin and name == "target":
                        point["fits"] = monitor_fits(trainer.loop.fits, body, rows, truth, device)
            curve.append(point)
        # start_epoch: where this attempt began (> 0 after a resume from a checkpoint)
        metrics.update(epoch=epoch, start_epoch=start_epoch, train_seconds=train_s,
                       monitor_seconds=time.monotonic() - t0 - train_s)
        last = epoch == tcfg.epochs - 1
        if last or (epoch + 1) % tcfg.checkpoint_every_epochs == 0:
            with tempfile.TemporaryDirectory() as d:
                if rank == 0:
                    model = trainer.net.module if hasattr(trainer.net, "module") else trainer.net
                    torch.save({"model": model.state_dict(), "trainer": trainer.state_dict(), "epoch": epoch,
                                "step": step, "metrics": metrics, "curve": curve},
                               os.path.join(d, CHECKPOINT_FILE))
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
                else:
                    ray.train.report(metrics)
        else:
            ray.train.report(metrics)


def merge_fits(fits) -> None:
    """Every rank's fits dictionary becomes the per-row best of all ranks' (one gather)."""
    import torch.distributed as dist

    from annotator.fitting.in_the_loop import FitDictionary

    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, fits.state_dict())
    fits.merge([FitDictionary.from_state(g) for g in gathered])


def ranks_check(net, trained: torch.Tensor, rows: int, rank: int) -> dict | None:
    """After an epoch of a several-worker step, what the ranks did together (every rank calls
    it; rank 0 gets the answer, the others None): the main rows trained on across the ranks
    (``trained``: this rank's row indices, the same rows on every rank; each row exactly once
    means ``seen == unique == rows``) and the largest difference between the ranks' parameters
    (0 when DDP keeps them in sync). One gather of the indices and of one float64 sum per
    parameter tensor."""
    import torch.distributed as dist

    params = torch.stack([p.detach().double().sum() for p in net.parameters()]).cpu()
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (trained.cpu().numpy(), params))
    if rank != 0:
        return None
    ids = np.concatenate([part for part, _ in gathered])
    diff = max(float((p - gathered[0][1]).abs().max()) for _, p in gathered)
    return {"rows": rows, "seen": int(len(ids)), "unique": int(len(np.unique(ids))), "param_max_abs_diff": diff}


def load_rows(spec: dict, cfg, body, with_truth: bool = False):
    """The rows of one role (``spec`` from :func:`_role_specs`): manifest columns joined with
    the cached crops, plus the attached prior / pseudo-GT columns, as
    :class:`~annotator.steps.trainer.TrainRows`. ``with_truth``: also the SMPL truth of the
    rows (monitor sets), as ``(rows, truth)``."""
    from annotator.steps.trainer import TrainRows

    cols = _load_columns(spec, cfg)
    rows = TrainRows(cols, body=body if spec.get("attach") == "attach_pseudo_gt" else None)
    if not with_truth:
        return rows
    return rows, _truth(spec, rows.sample_id, cols)


def _load_columns(spec: dict, cfg) -> dict[str, np.ndarray]:
    from annotator.data import crop_cache
    from annotator.data.manifest import read_parquet_file
    from annotator.steps.runtime import dense_list_columns

    frames = []
    for shard, cached in zip(spec["manifest"], spec["cache"]):
        t = dense_list_columns(read_parquet_file(shard))
        cols = {name: t.column(name).to_numpy(zero_copy_only=False) for name in t.column_names}
        cols["path"] = np.full(t.num_rows, shard, dtype=object)
        crops = crop_cache.read_shard(cached, cfg.crop)
        if not np.array_equal(crops["sample_id"], cols["sample_id"]):
            raise RuntimeError(f"crop cache {storage.redact(cached)} does not match manifest {storage.redact(shard)}")
        cols.update({k: v for k, v in crops.items() if k != "sample_id"})
        keep = np.asarray(cols["ok"], bool) & ~_heldout_mask(cols["sample_id"], spec.get("heldout", 0.0),
                                                             spec.get("only_heldout", False))
        if spec.get("truth") == "manifest":  # a monitor scored against the rows' own SMPL: only rows with it
            keep &= np.asarray(cols["has_smpl"], bool)
        if spec.get("without_smpl"):  # the aux-set annotator's rows: 3D joints, no SMPL
            keep &= ~np.asarray(cols["has_smpl"], bool) & np.asarray(cols["has_3d"], bool)
        cols = {k: v[keep] for k, v in cols.items()}
        if spec.get("attach") and len(cols["sample_id"]):
            from annotator.steps import infer

            cols = getattr(infer, spec["attach"])(cols, spec["dirs"])
        frames.append(cols)
    cols = {k: np.concatenate([f[k] for f in frames]) for k in frames[0]} if frames else {}
    if spec.get("max_rows") and cols and len(cols["sample_id"]) > spec["max_rows"]:
        cols = {k: v[: spec["max_rows"]] for k, v in cols.items()}
    return cols


def _heldout_mask(sample_ids: np.ndarray, fraction: float, only: bool) -> np.ndarray:
    """Rows of the held-out slice (a stable hash of ``sample_id``), or its complement."""
    import hashlib

    if fraction <= 0:
        return np.ones(len(sample_ids), bool) if only else np.zeros(len(sample_ids), bool)
    bucket = np.array([int(hashlib.sha1(str(s).encode()).hexdigest()[:8], 16) % 10_000 for s in sample_ids])
    held = bucket < int(round(fraction * 10_000))
    return ~held if only else held


def _truth(spec: dict, sample_ids: np.ndarray, cols: dict) -> dict[str, torch.Tensor]:
    """SMPL truth of monitor rows: the dataset's ground-truth file (synthetic sets, read for
    evaluation only) or the rows' own SMPL columns (aux3d; :func:`_load_columns` keeps only rows
    that have SMPL, so a 3D-joints-only row is never scored against zeros)."""
    import pandas as pd

    from annotator.evaluation.reports import ground_truth, pose_tensors

    if spec.get("truth") == "manifest":
        return pose_tensors(cols, prefix="smpl_")
    frames = [ground_truth(name, made) for name, made in spec["truth"].items()]
    return pose_tensors(pd.concat([f for f in frames if f is not None]).loc[list(sample_ids)])


def _newest_state(registered, ckpt_dir: str | None) -> dict | None:
    """The checkpoint state a (re)started worker continues from: the newest of the one Ray
    Train registered and the ones on storage. A worker killed after writing ``state.pt`` but
    before Ray Train registered it leaves a newer checkpoint on storage than
    ``get_checkpoint()`` knows; a re-submitted job has only the ones on storage."""
    from annotator.steps.runtime import load_torch

    state = None
    stored = latest_checkpoint(ckpt_dir) if ckpt_dir else None
    if stored is not None:
        state = load_torch(stored)
    if registered is not None:
        with registered.as_directory() as d:
            reg = load_torch(os.path.join(d, CHECKPOINT_FILE))
        if state is None or int(reg["epoch"]) > int(state["epoch"]):
            state = reg
    return state


@dataclass(frozen=True)
class TrainingStep:
    """What distinguishes the training steps (their settings classes: :data:`annotator.config.TRAINING_SECTIONS`)."""

    section: str
    """Job key of the step's settings."""
    main_role: str
    """Dataset role whose rows an epoch passes over."""
    attach: str | None = None
    """Columns joined to the main rows: ``attach_prior`` (``prior/``) or ``attach_pseudo_gt`` (``pseudo_gt/``)."""
    init_from: str | None = None
    """Step whose weights it starts from; None: from scratch (backbone weights from ``network.weights``)."""
    attach_from: str | None = None
    """Run output (:data:`annotator.layout.OUTPUT_KINDS`) the attached columns come from; None: the
    attach's own (``prior`` / ``pseudo_gt``)."""
    fits_in_the_loop: bool = False
    """SPIN: SMPLify refits each batch from the predictions, a dictionary of the best fits supervises the
    network (:class:`~annotator.steps.trainer.FitsInTheLoop`), and the final fits are written to ``fits/``."""
    uses_lifter: bool = False
    """A fresh annotator network that starts from the 2D-keypoint lifter's pose with ``lifter.enabled``
    (finetune inherits it from pretrain's weights; the estimator, an image-only model, never uses it)."""
    reads_joints: bool = False
    """The aux-set annotator (NeuralAnnot Sec. 3.1): its main rows are the aux3d rows with 3D joints and
    no SMPL, and its network reads their 3D joints beside the image."""


TRAINING_STEPS: dict[str, TrainingStep] = {
    "pretrain": TrainingStep("pretrain", "aux3d", uses_lifter=True),
    "finetune": TrainingStep("finetune", "target", attach="attach_prior", init_from="pretrain"),
    "train-spin": TrainingStep("spin", "target", init_from="pretrain", fits_in_the_loop=True),
    "train-second-round": TrainingStep("second_round", "target", attach="attach_pseudo_gt", attach_from="first_round",
                                       uses_lifter=True),
    "train-estimator": TrainingStep("estimator", "target", attach="attach_pseudo_gt"),
    "annotate-aux": TrainingStep("aux_image", "aux3d", reads_joints=True),
}


def train_settings(cfg, step: str):
    """The training config (:class:`~annotator.config.TrainBase` subclass) of a training step."""
    return getattr(cfg, TRAINING_STEPS[step].section)


def _attached_dirs(ctx: StepContext, kind: TrainingStep, names: list[str]) -> dict:
    if kind.attach is None:
        return {}
    output = kind.attach_from or {"attach_prior": "prior", "attach_pseudo_gt": "pseudo_gt"}[kind.attach]
    return {"attach": kind.attach, "dirs": {n: ctx.layout.output(output, n) for n in names}}


def _only_ok(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ok = np.asarray(batch["ok"], dtype=bool)
    if ok.all():
        return batch
    return {k: v[ok] for k, v in batch.items()}


# --------------------------------------------------------------------------- driver side
def ensure_crop_cache(ctx: StepContext, names: list[str]) -> dict[str, list[str]]:
    """The crop cache shards of datasets ``names`` (one per manifest shard, same order),
    decoding the missing ones in parallel Ray tasks; caches of other settings are removed."""
    import ray

    from annotator.data import crop_cache

    cfg, manifest = ctx.cfg, ctx.result("manifest")
    out, todo = {}, []
    for name in names:
        shards = manifest["datasets"][name]["shards"]
        key = crop_cache.cache_key(cfg.crop, shards)
        for stale in crop_cache.stale_caches(ctx.layout.crops(name), key):
            storage.remove(stale, recursive=True)
        cache_dir = storage.join(ctx.layout.crops(name), key)
        out[name] = [crop_cache.cache_shard_path(cache_dir, s) for s in shards]
        todo += [(s, c) for s, c in zip(shards, out[name]) if not storage.exists(c)]
    if todo:
        t0 = time.monotonic()
        build = ray.remote(num_cpus=cfg.ray.decode_cpus)(crop_cache.build_shard)
        rows = sum(ray.get([build.remote(s, c, cfg.crop) for s, c in todo]))
        log.info("[crops] cached %d crops of %d shard(s) in %.1fs", rows, len(todo), time.monotonic() - t0)
    return out


def _role_specs(ctx: StepContext, step: str) -> dict:
    """What each worker loads: the ``main`` rows an epoch passes over (pretrain: aux3d;
    finetune: target + prior predictions; estimator: aux3d + target pseudo-GT), the ``aux``
    rows mixed into every finetune batch, and the learning curve's ``monitor`` sets."""
    cfg = ctx.cfg
    manifest = ctx.result("manifest")
    tcfg, kind = train_settings(cfg, step), TRAINING_STEPS[step]
    aux_names = [d.name for d in ctx.datasets("aux3d")]
    target_names = [d.name for d in ctx.datasets("target")]
    main_names = aux_names if kind.main_role == "aux3d" else target_names
    if not main_names:
        raise RuntimeError(f"{step} needs at least one dataset with role {kind.main_role!r}"
                           + (" (its pseudo-GT)" if kind.attach == "attach_pseudo_gt" else ""))
    cache = ensure_crop_cache(ctx, aux_names + target_names)

    def spec(names: list[str], **extra) -> dict:
        return {"manifest": [s for n in names for s in manifest["datasets"][n]["shards"]],
                "cache": [c for n in names for c in cache[n]], **extra}

    if kind.reads_joints:  # the aux-set annotator: the rows it annotates, scored against hidden truth where the set has it
        roles: dict = {"main": spec(aux_names, without_smpl=True)}
        hidden = [n for n in aux_names if manifest["datasets"][n].get("ground_truth")]
        roles["monitor"] = {"aux3d_hidden": spec(hidden, without_smpl=True, max_rows=tcfg.monitor_rows,
                                                 truth={n: manifest["datasets"][n] for n in hidden})} \
            if hidden and tcfg.monitor_rows > 0 else {}
        return roles
    held = tcfg.heldout_fraction  # aux3d rows kept out of training, for the learning curve
    # aux3d rows without SMPL: their annotate-aux pseudo-GT (none written: a no-op)
    aux_attach = {"attach": "attach_aux_pseudo_gt", "dirs": {n: ctx.layout.aux_pseudo_gt(n) for n in aux_names}} \
        if cfg.aux_annotator.kind != "none" else {}
    main_attach = _attached_dirs(ctx, kind, main_names) if kind.main_role != "aux3d" else aux_attach
    roles: dict = {"main": spec(main_names, heldout=held if kind.main_role == "aux3d" else 0.0, **main_attach)}
    if isinstance(tcfg, MixedBatches) and tcfg.aux3d_fraction > 0 and aux_names:
        roles["aux"] = spec(aux_names, heldout=held, **aux_attach)  # mixed into every batch
    monitor = {}
    if aux_names and tcfg.heldout_fraction > 0:
        monitor["aux3d_heldout"] = spec(aux_names, heldout=tcfg.heldout_fraction, only_heldout=True,
                                        truth="manifest", max_rows=tcfg.monitor_rows)
    with_truth = [n for n in target_names if manifest["datasets"][n].get("ground_truth")]
    if with_truth and tcfg.monitor_rows > 0:
        monitor["target"] = spec(with_truth, truth={n: manifest["datasets"][n] for n in with_truth},
                                 max_rows=tcfg.monitor_rows)
    roles["monitor"] = monitor
    return roles


def latest_checkpoint(ckpt_dir: str) -> str | None:
    """The newest ``state.pt`` reported under a step's checkpoint dir (local or remote)."""
    fs, root = storage.filesystem(ckpt_dir)
    if not fs.exists(root):
        return None
    found = [p for p in fs.glob(root.rstrip("/") + "/**/" + CHECKPOINT_FILE)]
    if not found:
        return None
    best, best_epoch = None, -1
    for p in found:
        url = (ckpt_dir.split("://")[0] + "://" + p) if storage.is_remote(ckpt_dir) else p
        try:
            from annotator.steps.runtime import load_torch

            epoch = int(load_torch(url)["epoch"])
        except Exception:  # a half-written checkpoint of a killed run is skipped
            continue
        if epoch > best_epoch:
            best, best_epoch = url, epoch
    return best


def run_training(ctx: StepContext, step: str, ik_path: str | None = None) -> dict:
    """Train step ``step`` on Ray Train; ``ik_path``: the aux-set annotator's IK starting point."""
    import ray.train
    from ray.train.torch import TorchTrainer

    cfg = ctx.cfg
    tcfg = train_settings(cfg, step)
    ckpt_dir = ctx.layout.checkpoints(step)
    body_path = ctx.result("manifest")["body_model_path"]
    loop_cfg = {"job": cfg.model_dump_json(), "step": step, "body_model_path": body_path,
                "roles": _role_specs(ctx, step)}
    init_from = TRAINING_STEPS[step].init_from
    loop_cfg["init_weights"] = ctx.result(init_from)["weights"] if init_from else None
    if TRAINING_STEPS[step].reads_joints:
        from annotator.body.joints import TRAIN_CONVENTION, get_convention

        loop_cfg["joints_in"] = get_convention(TRAIN_CONVENTION).num_joints
        loop_cfg["ik_path"] = ik_path
    if TRAINING_STEPS[step].uses_lifter and cfg.lifter.enabled:  # the annotator network starts from the lifter's pose
        loop_cfg["lifter_path"] = ctx.result("train-lifter")["lifter"]
    in_the_loop = TRAINING_STEPS[step].fits_in_the_loop
    if in_the_loop and cfg.smplify.init == "lifter":  # the dictionary starts from the lifter's fits
        loop_cfg["fit_lifter_path"] = ctx.result("train-lifter")["lifter"]
    if tcfg.loss_mode == "finetune" or in_the_loop:  # the VPoser prior (latent L2 / the fitter's), where that step ran
        prior = ctx.results.get("train-pose-prior") or (
            ctx.result("train-pose-prior") if "train-pose-prior" in cfg.steps else None)
        loop_cfg["vposer_path"] = prior["vposer"] if prior else None
    ctx.fresh_output_dir(step, ckpt_dir, patterns=("checkpoint_*", "model.pt", "fits.pt", "checkpoint_manager_snapshot.json"))
    loop_cfg["ckpt_dir"] = ckpt_dir  # workers resume from the newest checkpoint found there
    resume = latest_checkpoint(ckpt_dir)
    if resume:
        log.info("[%s] resuming from %s", step, storage.redact(resume))

    fs, path = storage.pyarrow_filesystem(ctx.layout.checkpoints())
    use_gpu = cfg.ray.gpus_per_worker > 0
    resources = {"CPU": cfg.ray.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = cfg.ray.gpus_per_worker
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_cfg,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.ray.num_workers, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=step, storage_path=path, storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=cfg.ray.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    t0 = time.monotonic()
    result = trainer.fit()
    seconds = time.monotonic() - t0
    final = latest_checkpoint(ckpt_dir)
    if final is None:
        raise RuntimeError(f"{step}: training finished without a checkpoint under {storage.redact(ckpt_dir)}")
    from annotator.steps.runtime import load_torch, save_torch

    state = load_torch(final)
    weights = storage.join(ckpt_dir, "model.pt")
    save_torch({"model": state["model"], "step": step, "epoch": state["epoch"]}, weights)
    curve = state.get("curve", [])
    metrics = {k: (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else v)
               for k, v in (result.metrics or {}).items() if isinstance(v, (int, float, str))}
    log.info("[%s] done in %.1fs: %s", step, seconds,
             ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    out = {"weights": weights, "epochs": tcfg.epochs, "resumed_from": resume, "metrics": metrics,
           "seconds": round(seconds, 2), "curve": curve}
    if in_the_loop:  # method spin: the final dictionary, and its rows under fits/
        from annotator.steps.infer import write_fits

        fits_path = storage.join(ckpt_dir, "fits.pt")
        save_torch(state["trainer"]["fits"], fits_path)
        out["fits"] = {"path": fits_path, **write_fits(ctx, step, fits_path)}
    return out


def run_pretrain(ctx: StepContext) -> dict:
    return run_training(ctx, "pretrain")


def run_finetune(ctx: StepContext) -> dict:
    return run_training(ctx, "finetune")


def run_train_spin(ctx: StepContext) -> dict:
    return run_training(ctx, "train-spin")


__all__ = ["train_loop", "run_pretrain", "run_finetune", "run_train_spin", "latest_checkpoint"]
