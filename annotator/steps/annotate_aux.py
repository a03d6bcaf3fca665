"""Step ``annotate-aux`` (NeuralAnnot Alg. 1 lines 1-6): SMPL pseudo-GT for ``aux3d`` rows that
have 3D joints but no SMPL parameters.

With ``aux_annotator.kind: ik`` one Ray task trains the IK network (:mod:`annotator.fitting.ik`)
per joint convention found in such rows, on the synthetic mocap poses plus the aux3d SMPL poses,
and fits every such row from its true 3D joints (camera frame, so the parameters are too). Output
shard ``aux_pseudo_gt/<set>/part-N`` (pseudo-GT schema, ``method = ik``) holds the rows of manifest
shard ``part-N`` that needed it; rows with neither SMPL nor 3D joints go to
``rejects/<set>/annotate-aux-part-N.parquet`` (reason ``no_3d_joints``). Pretrain and the aux rows
of finetune and train-estimator then use those parameters as SMPL supervision
(:func:`annotator.steps.infer.attach_aux_pseudo_gt`), beside the rows' true 3D joints.

With ``aux_annotator.kind: image`` (NeuralAnnot's own annotator, ``method = neuralannot-aux``) the
step trains the image + 3D-joints CliffNet (``joints_in``; :mod:`annotator.model.cliff`) on Ray Train
with the training steps' loop (:data:`annotator.steps.train.TRAINING_STEPS` ``annotate-aux``,
settings ``aux_image``, loss L_ax: L1 on the 3D joints + per-parameter L2, plus the 2D keypoints for
the camera) on those rows, then predicts every row of their sets in the inference steps' Ray Data
pass: ``aux_pseudo_gt/<set>/part-N`` then has one row per manifest row (rows with SMPL included,
and ignored by the attach); a row without 3D joints is rejected (``no_3d_joints``).
"""
from __future__ import annotations

import logging

import numpy as np

from annotator import storage
from annotator.steps.base import StepContext

log = logging.getLogger("annotator")

STEP = "annotate-aux"
REASON = "no_3d_joints"
METHOD = "ik"
"""``method`` column of the IK network's aux pseudo-GT."""
IMAGE_METHOD = "neuralannot-aux"
"""``method`` column of the image + 3D-joints network's aux pseudo-GT (``aux_annotator.kind: image``)."""


def _needs(cols: dict[str, np.ndarray]) -> np.ndarray:
    return ~np.asarray(cols["has_smpl"], bool)


def annotate_shard(cols: dict[str, np.ndarray], fits: dict[str, tuple], body, crop_scale: float,
                   checkpoint_id: str) -> dict[str, np.ndarray]:
    """The pseudo-GT columns (:func:`annotator.steps.infer.output_columns`) of the rows of
    one manifest shard that lack SMPL: ``fits`` maps a joint convention to ``(net, convention)``."""
    import torch

    from annotator.body.joints import TRAIN_CONVENTION, select_keypoints
    from annotator.data.batching import stack_list_column
    from annotator.fitting.ik import ik_fit
    from annotator.geometry.cameras import cam_full_to_crop, default_focal, perspective_projection
    from annotator.geometry.crop import bbox_to_center_size
    from annotator.steps.infer import output_columns

    need = _needs(cols)
    sub = {k: np.asarray(v)[need] for k, v in cols.items()}
    n = int(need.sum())
    out = output_columns(sub, METHOD, checkpoint_id, body)
    bbox = out["bbox"]
    w, h = np.asarray(sub["image_width"], np.float32), np.asarray(sub["image_height"], np.float32)
    focal = np.asarray([np.nan if f is None else f for f in sub["focal_length"]], np.float32)
    focal[~np.isfinite(focal)] = default_focal(torch.from_numpy(w), torch.from_numpy(h)).numpy()[~np.isfinite(focal)]
    pp, pp_ok = stack_list_column(sub["principal_point"], 2)
    pp[~pp_ok] = np.stack([w, h], 1)[~pp_ok] / 2
    out.update(focal_length=focal, principal_point=pp)
    ok = np.zeros(n, bool)
    conv = np.asarray(sub["joints_3d_convention"], object)
    has3d = np.asarray(sub["has_3d"], bool)
    for c in sorted({str(x) for x in conv[has3d]}):
        rows = np.nonzero(has3d & (conv == c))[0]
        net, _ = fits[c]
        j = np.stack(sub["joints_3d"][rows]).astype(np.float32)
        joints = torch.from_numpy(j.reshape(len(rows), -1, 3))
        present = torch.isfinite(joints).all(-1)
        fit = ik_fit(net, body, c, torch.nan_to_num(joints), present)
        with torch.no_grad():
            kps = select_keypoints(body(global_orient=fit["global_orient"], body_pose=fit["body_pose"],
                                        betas=fit["betas"], transl=fit["transl"]).keypoints,
                                   body.keypoint_names, TRAIN_CONVENTION)
            f, p = torch.from_numpy(focal[rows]), torch.from_numpy(pp[rows])
            uv = perspective_projection(kps, f, p)
            center, size = bbox_to_center_size(torch.from_numpy(bbox[rows]), crop_scale)
            crop_cam = cam_full_to_crop(fit["transl"], center, size, torch.from_numpy(np.stack([w, h], 1)[rows]), f, p)
        for name in ("global_orient", "body_pose", "betas", "transl"):
            out[name][rows] = fit[name].numpy()
        out["crop_cam"][rows] = crop_cam.numpy()
        out["keypoints_2d"][rows] = uv.reshape(len(rows), -1).numpy()
        ok[rows] = True
    out["ok"] = ok
    out["reason"] = np.where(ok, "", REASON).astype(object)
    out["error"] = np.where(ok, "", "the row has neither SMPL parameters nor 3D joints").astype(object)
    return out


def train_ik_nets(cfg, datasets: dict[str, list[str]], body, conventions: list[str], checkpoint_dir: str):
    """One IK network per joint convention, trained on the synthetic mocap poses + the aux3d SMPL
    poses (``aux_annotator`` settings) and saved as ``<checkpoint_dir>/ik-<convention>.pt``:
    ``({convention: (net, path)}, poses, log lines)``."""
    import torch

    from annotator.fitting.ik import IKTraining, train_ik
    from annotator.steps.prepare import _collect_body_poses, _sample_mocap
    from annotator.steps.runtime import save_torch

    ac = cfg.aux_annotator
    own = _collect_body_poses([s for ss in datasets.values() for s in ss])
    poses = np.concatenate([own, _sample_mocap(ac.mocap_poses, ac.seed)]) if ac.mocap_poses else own
    fits, lines = {}, []
    for conv in conventions:
        if len(poses) == 0:
            raise RuntimeError("annotate-aux: no poses to train the IK network on (aux_annotator.mocap_poses is 0 and "
                               "no aux3d row has SMPL parameters)")
        settings = IKTraining(steps=ac.steps, batch_size=ac.batch_size, lr=ac.lr, seed=ac.seed)
        net, history = train_ik(body, conv, torch.from_numpy(poses), settings, log=lambda step, m, c=conv: lines.append(
            f"ik {c} step {step}: loss {m['loss']:.4f}, joints {1000 * m['joints']:.1f} mm ({m['seconds']:.0f}s)"))
        path = storage.join(checkpoint_dir, f"ik-{conv}.pt")
        save_torch({"model": net.state_dict(), "convention": conv, "poses": int(len(poses)), "history": history}, path)
        fits[conv] = (net, path)
    return fits, poses, lines


def _train_ik_task(job_json: str, datasets: dict[str, list[str]], body_model_path: str, convention: str,
                   checkpoint_dir: str) -> dict:
    """The image network's starting point (``aux_image.init: ik``): one IK network for ``convention``."""
    import torch

    from annotator.body import load_body_model
    from annotator.steps.runtime import run_body_model_config, worker_config

    cfg = worker_config(job_json)
    torch.set_num_threads(cfg.aux_annotator.num_cpus)
    body = load_body_model(run_body_model_config(cfg, body_model_path))
    fits, poses, lines = train_ik_nets(cfg, datasets, body, [convention], checkpoint_dir)
    return {"path": fits[convention][1], "poses": int(len(poses)), "log": lines}


def _annotate_task(job_json: str, datasets: dict[str, list[str]], body_model_path: str, out_dirs: dict[str, str],
                   rejects_dirs: dict[str, str], checkpoint_dir: str) -> dict:
    import torch

    from annotator.body import load_body_model
    from annotator.data.manifest import read_parquet_file
    from annotator.steps.infer import _commit_shard
    from annotator.steps.runtime import dense_list_columns, run_body_model_config, worker_config

    cfg = worker_config(job_json)
    ac = cfg.aux_annotator
    torch.set_num_threads(ac.num_cpus)
    shards = {(name, s): dense_list_columns(read_parquet_file(s)) for name, ss in datasets.items() for s in ss}
    cols = {key: {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names} for key, t in shards.items()}
    conventions = sorted({str(c) for v in cols.values() for c, need, has in
                          zip(v["joints_3d_convention"], _needs(v), np.asarray(v["has_3d"], bool)) if need and has})
    body = load_body_model(run_body_model_config(cfg, body_model_path))
    fits, poses, lines = train_ik_nets(cfg, datasets, body, conventions, checkpoint_dir)
    checkpoint_id = ",".join(f"{c}:{storage.redact(p)}" for c, (_, p) in fits.items()) or "none"
    result: dict[str, dict] = {name: {"rows": 0, "rejects": 0, "shards": []} for name in datasets}
    for (name, shard), c in cols.items():
        out = annotate_shard(c, fits, body, cfg.crop.bbox_scale, checkpoint_id)
        if not len(out["sample_id"]):  # every row has SMPL: nothing to annotate, nothing written
            continue
        bad = _commit_shard(STEP, name, shard, [out], out_dirs[name], rejects_dirs[name])
        result[name]["rows"] += int(out["ok"].sum())
        result[name]["rejects"] += bad
        result[name]["shards"].append(storage.join(out_dirs[name], shard.rsplit("/", 1)[-1]))
    return {"datasets": result, "conventions": conventions, "poses": int(len(poses)), "log": lines}


def run_image_annotator(ctx: StepContext, datasets: dict[str, list[str]]) -> dict:
    """``aux_annotator.kind: image``: the image + 3D-joints network trained on Ray Train (the training
    steps' loop, settings ``aux_image``) on the rows to annotate, then run on every row of their sets
    (the inference steps' Ray Data pass) into ``aux_pseudo_gt/<set>/``."""
    from annotator.steps.infer import infer_datasets
    from annotator.steps.train import run_training

    need = {n: ss for n, ss in datasets.items() if _rows_without_smpl(ss)}
    if not need:
        log.info("[%s] every aux3d row has SMPL: nothing to annotate", STEP)
        return {"datasets": {}, "dirs": {}}
    ik = None
    if ctx.cfg.aux_image.init == "ik":  # the regressor's starting point, trained first (every time the step runs)
        import ray

        from annotator.body.joints import TRAIN_CONVENTION

        ik = ray.get(ray.remote(num_cpus=ctx.cfg.aux_annotator.num_cpus)(_train_ik_task).remote(
            ctx.cfg.model_dump_json(), datasets, ctx.result("manifest")["body_model_path"], TRAIN_CONVENTION,
            ctx.layout.checkpoints(STEP)))
        for line in ik.pop("log"):
            log.info("[%s] %s", STEP, line)
    trained = run_training(ctx, STEP, ik_path=ik["path"] if ik else None)
    out = infer_datasets(ctx, STEP, need, trained["weights"], ctx.layout.aux_pseudo_gt, IMAGE_METHOD)
    for name, r in out["datasets"].items():
        log.info("[%s] %s: %d rows annotated by the image + joints network, %d rejected", STEP, name, r["rows"],
                 r["rejects"])
    return {**out, "weights": trained["weights"], "curve": trained["curve"], "metrics": trained["metrics"],
            "ik": ik, "dirs": {n: ctx.layout.aux_pseudo_gt(n) for n in need}}


def _rows_without_smpl(shards: list[str]) -> int:
    from annotator.data.manifest import read_parquet_file

    return sum(int((~np.asarray(read_parquet_file(s, ["has_smpl"]).column(0).to_numpy(zero_copy_only=False), bool)).sum())
               for s in shards)


def run_annotate_aux(ctx: StepContext) -> dict:
    import ray

    cfg = ctx.cfg
    manifest = ctx.result("manifest")
    datasets = {d.name: manifest["datasets"][d.name]["shards"] for d in ctx.datasets("aux3d")}
    if cfg.aux_annotator.kind == "image":
        return run_image_annotator(ctx, datasets)
    out_dirs = {n: ctx.layout.aux_pseudo_gt(n) for n in datasets}
    for d in out_dirs.values():
        ctx.fresh_output_dir(STEP, d)
    info = ray.get(ray.remote(num_cpus=cfg.aux_annotator.num_cpus)(_annotate_task).remote(
        cfg.model_dump_json(), datasets, manifest["body_model_path"], out_dirs,
        {n: ctx.layout.rejects(n) for n in datasets}, ctx.layout.checkpoints(STEP)))
    for line in info.pop("log"):
        log.info("[%s] %s", STEP, line)
    for name, r in info["datasets"].items():
        log.info("[%s] %s: %d rows annotated by the IK network, %d rejected (%s)", STEP, name, r["rows"], r["rejects"],
                 REASON)
    return {**info, "dirs": out_dirs}
