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

import numpy as np
import torch

from annotator import storage
from annotator.steps.base import StepContext

log = logging.getLogger("annotator")

CHECKPOINT_FILE = "state.pt"


# --------------------------------------------------------------------------- worker side
def train_loop(loop_cfg: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch

    from annotator.body import load_body_model
    from annotator.body.prior import load_vposer
    from annotator.data.batching import TRAIN_CONVENTION, to_model_batch
    from annotator.model.losses import compute_losses
    from annotator.model.outputs import decode, smpl_joint_targets
    from annotator.steps.runtime import autocast, load_network, run_body_model_config, worker_config

    cfg = worker_config(loop_cfg["job"])
    step = loop_cfg["step"]
    tcfg = train_settings(cfg, step)
    torch.manual_seed(tcfg.seed + ray.train.get_context().get_world_rank())
    device = ray.train.torch.get_device()

    body = load_body_model(run_body_model_config(cfg, loop_cfg["body_model_path"]), device=device)
    net = load_network(cfg, loop_cfg.get("init_weights"), device)
    vposer = None
    if step == "finetune" and loop_cfg.get("vposer_path") and tcfg.loss.pose_prior > 0:
        vposer = load_vposer(loop_cfg["vposer_path"]).to(device).eval()
        for p in vposer.parameters():
            p.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=tcfg.lr)
    start_epoch = 0
    state = _newest_state(ray.train.get_checkpoint(), loop_cfg.get("ckpt_dir"))
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
    net = ray.train.torch.prepare_model(net)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")

    main_name = "aux3d" if step == "pretrain" else "target"
    main_shard = ray.train.get_dataset_shard(main_name)
    aux_shard = ray.train.get_dataset_shard("aux3d") if step != "pretrain" and loop_cfg["mix_aux3d"] else None
    n_aux = int(round(tcfg.batch_size * tcfg.aux3d_fraction)) if aux_shard is not None else 0
    n_main = max(1, tcfg.batch_size - n_aux)
    mode = "finetune" if step == "finetune" else "pretrain"  # the estimator is fully supervised

    def aux_batches():
        while True:  # aux3d is cycled: an epoch is one pass over the target data
            yielded = False
            for b in aux_shard.iter_batches(batch_size=n_aux, batch_format="numpy", drop_last=True):
                yielded = True
                yield b
            if not yielded:
                return

    for epoch in range(start_epoch, tcfg.epochs):
        net.train()
        aux_iter = aux_batches() if n_aux else None
        sums: dict[str, float] = {}
        count = 0
        t0 = time.monotonic()
        for np_batch in main_shard.iter_batches(batch_size=n_main, batch_format="numpy"):
            parts = [np_batch]
            if aux_iter is not None:
                aux = next(aux_iter, None)
                if aux is not None:
                    parts.append(aux)
            batches = [to_model_batch(_only_ok(p), device) for p in parts]
            batches = [smpl_joint_targets(b, body, TRAIN_CONVENTION) for b in batches if b["img"].shape[0] > 0]
            if not batches:
                continue
            opt.zero_grad(set_to_none=True)
            total = 0.0
            terms_acc: dict[str, float] = {}
            n_rows = sum(b["img"].shape[0] for b in batches)
            for b in batches:  # loss is a row-weighted mean over the mixed parts
                with autocast(cfg, device):
                    pred = net(b["img"], b["bbox_info"])
                dec = decode(pred, b, body, convention=TRAIN_CONVENTION, reprojection=tcfg.reprojection)
                loss, terms = compute_losses(pred, dec, b, tcfg.loss, mode=mode, reprojection=tcfg.reprojection,
                                             vposer=vposer, use_prior_reg=tcfg.use_prior_reg)
                w = b["img"].shape[0] / n_rows
                scaler.scale(loss * w).backward()
                total += float(loss.detach()) * w
                for k, v in terms.items():
                    terms_acc[k] = terms_acc.get(k, 0.0) + float(v) * w
            scaler.step(opt)
            scaler.update()
            sums["loss"] = sums.get("loss", 0.0) + total * n_rows
            for k, v in terms_acc.items():
                sums[k] = sums.get(k, 0.0) + v * n_rows
            count += n_rows
        metrics = {k: v / max(count, 1) for k, v in sums.items()}
        # start_epoch: where this attempt began (> 0 after a resume from a checkpoint)
        metrics.update(epoch=epoch, start_epoch=start_epoch, samples=count,
                       samples_per_s=count / max(time.monotonic() - t0, 1e-9))
        last = epoch == tcfg.epochs - 1
        if last or (epoch + 1) % tcfg.checkpoint_every_epochs == 0:
            with tempfile.TemporaryDirectory() as d:
                if ray.train.get_context().get_world_rank() == 0:
                    model = net.module if hasattr(net, "module") else net
                    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                                "step": step, "metrics": metrics}, os.path.join(d, CHECKPOINT_FILE))
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
                else:
                    ray.train.report(metrics)
        else:
            ray.train.report(metrics)


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


def train_settings(cfg, step: str):
    """The :class:`~annotator.config.TrainConfig` of a training step."""
    return {"pretrain": cfg.pretrain, "finetune": cfg.finetune, "train-estimator": cfg.estimator}[step]


def _only_ok(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ok = np.asarray(batch["ok"], dtype=bool)
    if ok.all():
        return batch
    return {k: v[ok] for k, v in batch.items()}


# --------------------------------------------------------------------------- driver side
def _datasets(ctx: StepContext, step: str) -> dict:
    from annotator.data.batching import decode_batch
    from annotator.steps.runtime import read_manifest_dataset

    cfg = ctx.cfg
    manifest = ctx.result("manifest")

    def shards(role: str) -> list[str]:
        return [s for d in ctx.datasets(role) for s in manifest["datasets"][d.name]["shards"]]

    def decoded(ds):
        return ds.map_batches(decode_batch, fn_kwargs={"crop": cfg.crop}, batch_size=64,
                              batch_format="numpy", num_cpus=cfg.ray.decode_cpus)

    out = {}
    aux = shards("aux3d")
    tcfg = train_settings(cfg, step)
    if step == "pretrain" or (tcfg.aux3d_fraction > 0 and aux):
        if not aux:
            raise RuntimeError("pretrain needs at least one dataset with role 'aux3d'")
        # finetune cycles aux3d in manifest order; the fully supervised steps shuffle it
        ds = read_manifest_dataset(aux) if step == "finetune" else read_manifest_dataset(aux).random_shuffle(seed=tcfg.seed)
        out["aux3d"] = decoded(ds)
    if step == "finetune":
        from annotator.steps.infer import attach_prior

        target = shards("target")
        prior_dirs = {d.name: ctx.layout.prior(d.name) for d in ctx.datasets("target")}
        ds = read_manifest_dataset(target).map_batches(
            attach_prior, fn_kwargs={"prior_dirs": prior_dirs}, batch_format="numpy", batch_size=256)
        out["target"] = decoded(ds.random_shuffle(seed=cfg.finetune.seed))
    if step == "train-estimator":
        from annotator.steps.infer import attach_pseudo_gt

        target = shards("target")
        if not target:
            raise RuntimeError("train-estimator needs the pseudo-GT of at least one 'target' dataset")
        pgt_dirs = {d.name: ctx.layout.pseudo_gt(d.name) for d in ctx.datasets("target")}
        ds = read_manifest_dataset(target).map_batches(
            attach_pseudo_gt, fn_kwargs={"pseudo_gt_dirs": pgt_dirs}, batch_format="numpy", batch_size=256)
        out["target"] = decoded(ds.random_shuffle(seed=cfg.estimator.seed))
    return out


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


def run_training(ctx: StepContext, step: str) -> dict:
    import ray.train
    from ray.train.torch import TorchTrainer

    cfg = ctx.cfg
    tcfg = train_settings(cfg, step)
    ckpt_dir = ctx.layout.checkpoints(step)
    body_path = ctx.result("manifest")["body_model_path"]
    loop_cfg = {"job": cfg.model_dump_json(), "step": step, "body_model_path": body_path,
                "mix_aux3d": bool(ctx.datasets("aux3d")) and tcfg.aux3d_fraction > 0}
    if step in ("pretrain", "train-estimator"):
        loop_cfg["init_weights"] = None  # from scratch; backbone weights (if any) come from network.weights
    else:
        loop_cfg["init_weights"] = ctx.result("pretrain")["weights"]
        prior = ctx.results.get("train-prior") or (ctx.result("train-prior") if "train-prior" in cfg.steps else None)
        loop_cfg["vposer_path"] = prior["vposer"] if prior else None
    ctx.fresh_output_dir(step, ckpt_dir, patterns=("checkpoint_*", "model.pt", "checkpoint_manager_snapshot.json"))
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
        datasets=_datasets(ctx, step),
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
    metrics = {k: (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else v)
               for k, v in (result.metrics or {}).items() if isinstance(v, (int, float, str))}
    log.info("[%s] done in %.1fs: %s", step, seconds,
             ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return {"weights": weights, "epochs": tcfg.epochs, "resumed_from": resume, "metrics": metrics,
            "seconds": round(seconds, 2)}


def run_pretrain(ctx: StepContext) -> dict:
    return run_training(ctx, "pretrain")


def run_finetune(ctx: StepContext) -> dict:
    return run_training(ctx, "finetune")


__all__ = ["train_loop", "run_pretrain", "run_finetune", "latest_checkpoint"]
