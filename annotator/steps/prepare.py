"""Steps ``manifest``, ``train-pose-prior`` and ``train-lifter``.

``manifest``: makes the run's body model file (built once, copied into the run so every
Ray worker on every node loads the same bytes), generates the synthetic datasets of the
job (``format: synth``) in their real formats, and runs the dataset adapters into
manifest shards + rejects - one Ray task per dataset.

``train-pose-prior``: fits the VPoser-v2-compatible pose prior to the SMPL body poses of the
``aux3d`` manifests, or takes an official checkpoint given by ``pose_prior.checkpoint``.

``train-lifter`` (``lifter.enabled``): trains the 2D-keypoint lifter
(:mod:`annotator.fitting.lifter`) on the synthetic mocap poses and the aux3d SMPL poses, or
validates a saved one given by ``lifter.checkpoint``.
"""
from __future__ import annotations

import logging

import numpy as np

from annotator import storage
from annotator.config import DatasetConfig, JobConfig
from annotator.steps.base import StepContext
from annotator.steps.runtime import worker_config

log = logging.getLogger("annotator")

def _manifest_task(job_json: str, ds_json: str, synth_dir: str, manifest_dir: str, rejects_dir: str,
                   body_model_path: str) -> dict:
    from annotator.data import build_manifest

    cfg = worker_config(job_json)
    ds = DatasetConfig.model_validate_json(ds_json)
    synth = None
    if ds.format == "synth":
        from annotator.data.synth.pipeline import generate_from_config

        body_cfg = cfg.body_model.model_copy(update={"path": body_model_path})
        synth = generate_from_config(ds.synth, synth_dir, body_cfg)
        ds = ds.model_copy(update={"format": synth.format, "path": synth.annotations,
                                   "images": synth.images})
    info = build_manifest(ds, cfg.manifest, manifest_dir, rejects_dir)
    out = {"shards": [storage.join(manifest_dir, s) for s in info.shards], "rows": info.num_rows, "rejects": info.rejects_count, "input": info.input_count,
           "format": ds.format}
    if synth is not None:
        out["ground_truth"] = synth.ground_truth
    return out


def _body_model_file(cfg: JobConfig) -> str:
    if cfg.body_model.kind == "open" and not cfg.body_model.path:
        from annotator.body.open_model import ensure_open_model

        return ensure_open_model(cfg.body_model.cache_dir)
    return cfg.body_model.path


def run_manifest(ctx: StepContext) -> dict:
    import ray

    from annotator.body import load_body_model

    cfg = ctx.cfg
    body = load_body_model(cfg.body_model)  # builds the open model on first use (cached)
    body_path = ctx.layout.body_model()
    storage.write_bytes_atomic(body_path, storage.read_bytes(_body_model_file(cfg)))
    storage.write_json_atomic(ctx.layout.body_model_record(),
                              {"kind": cfg.body_model.kind, "num_betas": cfg.body_model.num_betas,
                               "model_id": body.model_id, "checksum": body.checksum})
    log.info("[manifest] body model %s (sha256 %s) -> %s", body.model_id, body.checksum[:12], storage.redact(body_path))

    task = ray.remote(num_cpus=1)(_manifest_task)
    present = []
    for d in cfg.datasets:
        if d.optional and d.path and not storage.exists(d.path):
            log.warning("[manifest] %s: optional dataset skipped: %s does not exist", d.name, storage.redact(d.path))
        else:
            present.append(d)
    refs = {
        d.name: task.remote(cfg.model_dump_json(), d.model_dump_json(), ctx.layout.synth(d.name),
                            ctx.layout.manifest(d.name), ctx.layout.rejects(d.name), body_path)
        for d in present
    }
    datasets = {}
    for name, ref in refs.items():
        datasets[name] = ray.get(ref)
        r = datasets[name]
        log.info("[manifest] %s: %d input instances -> %d rows in %d shards + %d rejects",
                 name, r["input"], r["rows"], len(r["shards"]), r["rejects"])
    return {"datasets": datasets, "body_model_path": body_path, "body_model_id": body.model_id,
            "body_model_checksum": body.checksum}


def _collect_body_poses(shards: list[str]) -> np.ndarray:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    poses = []
    for s in shards:
        fs, p = storage.pyarrow_filesystem(s)
        t = pq.read_table(p, filesystem=fs, columns=["smpl_body_pose", "has_smpl"])
        t = t.filter(pc.equal(t["has_smpl"], True))
        if t.num_rows:
            poses.append(np.stack(t["smpl_body_pose"].to_numpy(zero_copy_only=False)).astype(np.float32))
    return np.concatenate(poses) if poses else np.zeros((0, 69), np.float32)


def _train_pose_prior_task(job_json: str, shards: list[str], out_path: str) -> dict:
    import torch

    from annotator.body.prior import save_vposer, train_vposer

    cfg = worker_config(job_json)
    poses = _collect_body_poses(shards)
    pc = cfg.pose_prior
    mocap = 0
    if pc.mocap_poses:
        from annotator.data.synth.poses import sample_poses

        sampled = sample_poses(np.random.default_rng(pc.mocap_seed), pc.mocap_poses).body_pose
        poses = np.concatenate([poses, np.asarray(sampled, np.float32).reshape(pc.mocap_poses, -1)[:, :69]])
        mocap = pc.mocap_poses
    if len(poses) == 0:
        raise RuntimeError("train-pose-prior: no SMPL body poses in the aux3d manifests "
                           "(give pose_prior.checkpoint, or an aux3d dataset with SMPL parameters)")
    model, history = train_vposer(torch.from_numpy(poses[:, :63]), epochs=pc.epochs, batch_size=pc.batch_size,
                                  lr=pc.lr, seed=0)
    save_vposer(model, out_path)
    return {"poses": int(len(poses)), "mocap_poses": mocap, "final_loss": float(history["loss"][-1]) if history.get("loss") else None}


def run_train_pose_prior(ctx: StepContext) -> dict:
    import ray

    cfg = ctx.cfg
    if cfg.pose_prior.checkpoint:
        from annotator.body.prior import load_vposer

        load_vposer(cfg.pose_prior.checkpoint)  # validate now, not in the middle of finetune
        return {"vposer": cfg.pose_prior.checkpoint, "trained": False}
    manifest = ctx.result("manifest")["datasets"]
    shards = [s for d in ctx.datasets("aux3d") for s in manifest[d.name]["shards"]]
    out_path = storage.join(ctx.layout.pose_prior(), "vposer.pt")
    info = ray.get(ray.remote(num_cpus=1)(_train_pose_prior_task).remote(cfg.model_dump_json(), shards, out_path))
    log.info("[train-pose-prior] VPoser fitted to %d poses (%d of them synthetic mocap; final loss %s)", info["poses"],
             info["mocap_poses"], info["final_loss"])
    return {"vposer": out_path, "trained": True, **info}


def _sample_mocap(count: int, seed: int) -> np.ndarray:
    """``(count, 69)`` body poses of the synthetic world's mocap set (its AMASS)."""
    from annotator.fitting.cli import mocap_poses

    return mocap_poses(count, seed)


def load_lifter(path: str):
    """A lifter saved by ``train-lifter`` (``{"model": state dict, "convention": ...}``), read
    without unpickling; a wrong file is an error naming it."""
    from annotator.body.joints import TRAIN_CONVENTION
    from annotator.model.lifter import Lifter
    from annotator.steps.runtime import load_torch

    obj = load_torch(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict) or "net.0.weight" not in obj["model"]:
        raise ValueError(f"{storage.redact(path)}: not a lifter file (expected a dict with a lifter state dict under 'model')")
    if obj.get("convention") != TRAIN_CONVENTION:
        raise ValueError(f"{storage.redact(path)}: lifter for keypoint convention {obj.get('convention')!r}, "
                         f"the network trains on {TRAIN_CONVENTION!r}")
    lifter = Lifter(Lifter.keypoints_in(obj["model"]))
    lifter.load_state_dict(obj["model"], strict=True)
    return lifter.eval()


def _train_lifter_task(job_json: str, shards: list[str], body_model_path: str, out_path: str) -> dict:
    import torch

    from annotator.body import load_body_model
    from annotator.body.joints import TRAIN_CONVENTION
    from annotator.fitting.lifter import train_lifter
    from annotator.steps.runtime import run_body_model_config, save_torch

    cfg = worker_config(job_json)
    lc = cfg.lifter
    torch.set_num_threads(lc.num_cpus)
    poses = np.concatenate([_collect_body_poses(shards), _sample_mocap(lc.mocap_poses, lc.seed)]) if lc.mocap_poses \
        else _collect_body_poses(shards)
    if len(poses) == 0:
        raise RuntimeError("train-lifter: no poses (lifter.mocap_poses is 0 and the aux3d manifests have no SMPL poses)")
    body = load_body_model(run_body_model_config(cfg, body_model_path))
    lines = []
    net, history = train_lifter(body, TRAIN_CONVENTION, torch.from_numpy(poses), steps=lc.steps, batch_size=lc.batch_size,
                                lr=lc.lr, seed=lc.seed, keypoint_weight=lc.keypoint_weight,
                                log=lambda step, m: lines.append(f"step {step}: loss {m['loss']:.3f} ({m['seconds']:.0f}s)"))
    save_torch({"model": net.state_dict(), "convention": TRAIN_CONVENTION, "poses": int(len(poses)),
                "history": history}, out_path)
    return {"poses": int(len(poses)), "mocap_poses": lc.mocap_poses, "final_loss": history["loss"][-1], "log": lines}


def run_train_lifter(ctx: StepContext) -> dict:
    import ray

    cfg = ctx.cfg
    if cfg.lifter.checkpoint:
        load_lifter(cfg.lifter.checkpoint)  # validate now, not in the middle of pretrain
        return {"lifter": cfg.lifter.checkpoint, "trained": False}
    manifest = ctx.result("manifest")
    shards = [s for d in ctx.datasets("aux3d") for s in manifest["datasets"][d.name]["shards"]]
    out_path = storage.join(ctx.layout.checkpoints("train-lifter"), "lifter.pt")
    info = ray.get(ray.remote(num_cpus=cfg.lifter.num_cpus)(_train_lifter_task).remote(
        cfg.model_dump_json(), shards, manifest["body_model_path"], out_path))
    for line in info.pop("log"):
        log.info("[train-lifter] %s", line)
    log.info("[train-lifter] lifter trained on %d poses (%d of them synthetic mocap)", info["poses"], info["mocap_poses"])
    return {"lifter": out_path, "trained": True, **info}
