"""Steps ``predict-prior`` and ``reinfer``: batch inference on Ray Data.

Pipeline per target dataset (Ray's batch-inference pattern)::

    read_parquet(manifest shards)                      # streamed, never materialised
      .map_batches(decode_batch)                       # CPU tasks: image decode + CLIFF crop
      .map_batches(Predictor, ActorPoolStrategy(n))    # model loaded once per actor (__init__)
      -> driver commits one output file per manifest shard

The driver writes ``<out>/<dataset>/part-NNNNN.parquet`` for manifest shard
``part-NNNNN.parquet`` once all of that shard's rows have arrived (atomic write), so file
names are deterministic, a rerun skips finished shards, and every manifest row ends up
exactly once: in the output, or - when its image cannot be read at inference time - in
``rejects/<dataset>/<step>-part-NNNNN.parquet`` with the reason.
"""
from __future__ import annotations

import functools
import logging
import os
from collections import defaultdict
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from annotator import storage
from annotator.body.joints import TRAIN_CONVENTION
from annotator.methods import METHODS, first_round_label, fits_label
from annotator.data.pseudo_gt import PARAM_WIDTHS, to_table
from annotator.steps.annotate_aux import REASON as NO_3D_JOINTS
from annotator.steps.base import Progress, StepContext

log = logging.getLogger("annotator")

PASS_THROUGH = ("sample_id", "dataset", "image_path", "source", "path")


def output_columns(batch: dict[str, np.ndarray], label: str, checkpoint_id: str, body) -> dict[str, np.ndarray]:
    """The pseudo-GT schema's columns for the rows of ``batch`` (manifest columns), before any
    prediction: pass-through and image columns filled, parameters, camera, keypoints and 2D errors
    NaN for the predictor to fill, and the provenance columns (``method`` = ``label``). Shared by
    :class:`Predictor` and the aux annotator (:mod:`annotator.steps.annotate_aux`)."""
    from annotator.body.joints import TRAIN_CONVENTION, get_convention
    from annotator.data.batching import stack_list_column

    n = len(batch["sample_id"])
    out: dict[str, np.ndarray] = {k: np.asarray(batch[k]) for k in PASS_THROUGH if k in batch}
    for name, width in PARAM_WIDTHS.items():
        out[name] = np.full((n, width), np.nan, np.float32)
    out["bbox"] = stack_list_column(batch["bbox"], 4)[0]
    out["image_width"] = np.asarray(batch["image_width"], np.int32)
    out["image_height"] = np.asarray(batch["image_height"], np.int32)
    out["focal_length"] = np.full(n, np.nan, np.float32)
    out["principal_point"] = np.full((n, 2), np.nan, np.float32)
    out["err2d_px"] = np.full(n, np.nan, np.float32)
    out["err2d_norm"] = np.full(n, np.nan, np.float32)
    out["keypoints_2d"] = np.full((n, 2 * get_convention(TRAIN_CONVENTION).num_joints), np.nan, np.float32)
    out["keypoint_convention"] = np.full(n, TRAIN_CONVENTION, dtype=object)
    out["method"] = np.full(n, label, dtype=object)
    out["checkpoint_id"] = np.full(n, checkpoint_id, dtype=object)
    out["body_model_id"] = np.full(n, body.model_id, dtype=object)
    out["body_model_checksum"] = np.full(n, body.checksum, dtype=object)
    return out


#: Predictor name of the pass that writes a fits dictionary (``weights``: the dictionary file).
FITS_PREDICTOR = "fits"


def smplify_init(cfg, dec: dict[str, torch.Tensor] | None, mb: dict[str, torch.Tensor], body,
                 lifter=None) -> dict[str, torch.Tensor] | None:
    """Where SMPLify starts (``smplify.init``): the network's decoded predictions ``dec``
    (``prior``, as SPIN does), the lifter's pose (``lifter``) or the mean pose (None)."""
    keys = ("global_orient", "body_pose", "betas", "transl")
    if cfg.smplify.init == "prior":
        return {k: dec[k].float() for k in keys}
    if cfg.smplify.init == "lifter":
        return {k: v.float() for k, v in lift(lifter, body, mb).items() if k in keys}
    return None


@torch.no_grad()
def lift(lifter, body, mb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The lifter's pose of the rows' 2D keypoints, with zero betas and the translation that
    puts the body over its keypoints (SMPLify's camera initialisation)."""
    from annotator.fitting.smplify import init_translation
    from annotator.geometry.rotations import matrix_to_axis_angle

    rot = lifter(mb["keypoints_2d"], mb["focal"], mb["principal_point"])
    n = rot.shape[0]
    out = {"global_orient": matrix_to_axis_angle(rot[:, 0]), "body_pose": matrix_to_axis_angle(rot[:, 1:]).reshape(n, -1),
           "betas": torch.zeros(n, body.num_betas, device=rot.device)}
    out["transl"] = init_translation(mb["keypoints_2d"], TRAIN_CONVENTION, mb["focal"], mb["principal_point"], body,
                                     out["betas"], out["global_orient"], out["body_pose"])
    return out


@torch.no_grad()
def with_projection(params: dict[str, torch.Tensor], mb: dict[str, torch.Tensor], body) -> dict[str, torch.Tensor]:
    """SMPL parameters (camera frame) plus their full-frame 2D keypoints and CLIFF crop camera."""
    from annotator.body.joints import select_keypoints
    from annotator.geometry.cameras import cam_full_to_crop, perspective_projection

    out = dict(params)
    kps = select_keypoints(body(**{k: params[k] for k in ("global_orient", "body_pose", "betas", "transl")}).keypoints,
                           body.keypoint_names, TRAIN_CONVENTION)
    out["keypoints_2d"] = perspective_projection(kps, mb["focal"], mb["principal_point"])
    out["crop_cam"] = cam_full_to_crop(params["transl"], mb["center"], mb["box_size"], mb["image_size"],
                                       mb["focal"], mb["principal_point"])
    return out


class Predictor:
    """Ray Data actor: loads the body model and network once, predicts a batch of crops."""

    def __init__(self, job_json: str, weights: str, body_model_path: str | None, method: str, checkpoint_id: str,
                 vposer_path: str | None = None, label: str | None = None, lifter_path: str | None = None):
        from annotator.body import load_body_model
        from annotator.steps.runtime import load_network, load_torch, pick_device, run_body_model_config, worker_config

        self.cfg = worker_config(job_json)
        self.device = pick_device(self.cfg)
        self.body = load_body_model(run_body_model_config(self.cfg, body_model_path), device=self.device)
        from annotator.steps.prepare import load_lifter

        self.method = method
        # what this method does per batch (annotator.methods); "prior" (predict-prior) is the network,
        # FITS_PREDICTOR reads a fits dictionary (``weights``) instead of predicting
        self.predictor = METHODS[method].predictor if method in METHODS else (
            FITS_PREDICTOR if method == FITS_PREDICTOR else "network")
        self.fits = None
        if self.predictor == FITS_PREDICTOR:
            from annotator.fitting.in_the_loop import FitDictionary

            self.fits = FitDictionary.from_state(load_torch(weights))
        # the lifter method and a fits pass have no image network (``weights`` is the lifter / dictionary file)
        self.net = None if self.predictor in ("lifter", FITS_PREDICTOR) else \
            load_network(self.cfg, weights, self.device).eval()
        self.lifter = load_lifter(weights if self.predictor == "lifter" else lifter_path).to(self.device) \
            if self.predictor == "lifter" or lifter_path else None
        self.label = label or method  # the ``method`` column: e.g. ``cliff-no-bbox`` for an ablation
        self.checkpoint_id = checkpoint_id
        self.vposer = None
        if method == "smplify" and vposer_path:
            from annotator.body.prior import load_vposer

            self.vposer = load_vposer(vposer_path).to(self.device).eval()

    def _fit(self, dec: dict[str, torch.Tensor], mb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``method: smplify``: per-sample fitting to the 2D keypoints, started from the network
        (``smplify.init: prior``, as SPIN does in the loop), the lifter or the mean pose."""
        from annotator.fitting import smplify

        init = smplify_init(self.cfg, dec, mb, self.body, self.lifter)
        fit = smplify(self.body, mb["keypoints_2d"], TRAIN_CONVENTION, mb["focal"], mb["principal_point"], init,
                      self.cfg.smplify, vposer=self.vposer)
        return with_projection(fit.params(), mb, self.body)

    def _lookup(self, sample_ids: np.ndarray, mb: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """A fits pass: the dictionary's entries of the rows, and which rows have one."""
        idx, found = self.fits.lookup(sample_ids)
        params = self.fits.take(torch.from_numpy(idx), self.device)
        return with_projection(params, mb, self.body), found

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from annotator.data.batching import to_model_batch
        from annotator.model.cliff import net_inputs
        from annotator.model.outputs import decode
        from annotator.steps.runtime import autocast

        ok = np.asarray(batch["ok"], dtype=bool)
        out = output_columns(batch, self.label, self.checkpoint_id, self.body)
        out["ok"], out["error"], out["reason"] = ok, np.asarray(batch["error"], dtype=object), np.asarray(batch["reason"], dtype=object)
        if self.net is not None and self.net.joints_in:  # the aux-set annotator reads the row's 3D joints
            lacking = ok & ~np.asarray(batch["has_3d"], dtype=bool)
            ok = out["ok"] = ok & ~lacking
            out["reason"][lacking], out["error"][lacking] = NO_3D_JOINTS, "the row has no 3D joints for the image + joints network"
        if ok.any():
            sub = {k: v[ok] for k, v in batch.items()}
            mb = to_model_batch(sub, self.device)
            if self.predictor == FITS_PREDICTOR:
                dec, found = self._lookup(sub["sample_id"], mb)
                if not found.all():  # a row the training step never fitted: rejected, never made up
                    lost = np.nonzero(ok)[0][~found]
                    out["ok"][lost] = False
                    out["reason"][lost], out["error"][lost] = "no_fit", "the fits dictionary has no entry for this row"
            elif self.predictor == "lifter":
                dec = with_projection(lift(self.lifter, self.body, mb), mb, self.body)
            else:
                with torch.inference_mode(), autocast(self.cfg, self.device):
                    pred = self.net(**net_inputs(mb, self.net))
                with torch.inference_mode():
                    dec = decode({k: v.float() for k, v in pred.items()}, mb, self.body, convention=TRAIN_CONVENTION)
                dec["crop_cam"] = pred["crop_cam"]
            if self.predictor == "smplify":
                dec = self._fit({k: v.clone() for k, v in dec.items()}, {k: v.clone() for k, v in mb.items()})
            kp2d = dec["keypoints_2d"].float()
            conf = mb["keypoints_2d"][..., 2]
            dist = torch.linalg.norm(kp2d - mb["keypoints_2d"][..., :2], dim=-1)
            err_px = (dist * conf).sum(1) / conf.sum(1).clamp_min(1e-9)
            err_px = torch.where(conf.sum(1) > 0, err_px, torch.full_like(err_px, float("nan")))
            params = {"global_orient": dec["global_orient"], "body_pose": dec["body_pose"], "betas": dec["betas"],
                      "transl": dec["transl"], "crop_cam": dec["crop_cam"]}
            for name, val in params.items():
                out[name][ok] = val.float().cpu().numpy()
            out["focal_length"][ok] = mb["focal"].cpu().numpy()
            out["principal_point"][ok] = mb["principal_point"].cpu().numpy()
            out["err2d_px"][ok] = err_px.cpu().numpy()
            out["err2d_norm"][ok] = (err_px / mb["box_size"]).cpu().numpy()
            out["keypoints_2d"][ok] = kp2d.reshape(len(kp2d), -1).cpu().numpy()
        return out


PRIOR_SOURCE_COLUMNS = {"prior_global_orient": "global_orient", "prior_body_pose": "body_pose",
                        "prior_betas": "betas"}
"""finetune: batch column <- column of the ``prior/`` output (flag ``has_prior``)."""
PSEUDO_GT_SOURCE_COLUMNS = {"smpl_global_orient": "global_orient", "smpl_body_pose": "body_pose",
                            "smpl_betas": "betas", "smpl_transl": "transl"}
"""train-estimator: batch column <- column of the ``pseudo_gt/`` output (flag ``has_smpl``)."""


@functools.lru_cache(maxsize=4)
def _output_shard(path: str, sources: tuple[str, ...]) -> tuple[pd.Index, dict[str, np.ndarray]]:
    """One output shard: sample_id index + stacked parameter arrays (cached per worker)."""
    empty = {c: np.zeros((0, PARAM_WIDTHS[c]), np.float32) for c in sources}
    if not storage.exists(path):  # no output file: none of the shard's rows has a prediction
        return pd.Index([], dtype=object), empty
    fs, p = storage.pyarrow_filesystem(path)
    t = pq.read_table(p, filesystem=fs, columns=["sample_id", *sources])
    if t.num_rows == 0:  # every row of the shard was rejected by that step
        return pd.Index([], dtype=object), empty
    arrays = {c: np.stack(t[c].to_numpy(zero_copy_only=False)).astype(np.float32) for c in sources}
    return pd.Index(t["sample_id"].to_pylist()), arrays


def attach_outputs(batch: dict[str, np.ndarray], output_dirs: dict[str, str], columns: dict[str, str],
                   flag: str, drop_missing: bool = False) -> dict[str, np.ndarray]:
    """Ray Data stage: adds a step's stored predictions to the manifest rows they belong to.

    Output shard ``<dir of dataset>/part-N`` holds the predictions for manifest shard
    ``part-N`` (same file name). ``columns`` maps batch column -> output column; rows
    without a prediction (rejected by that step) get ``flag = False`` and zeros, or are
    dropped with ``drop_missing``."""
    n = len(batch["sample_id"])
    out = dict(batch)
    for col, src in columns.items():
        out[col] = np.zeros((n, PARAM_WIDTHS[src]), np.float32)
    has = np.zeros(n, dtype=bool)
    keys = pd.Series([f"{d}\0{os.path.basename(str(p))}" for d, p in zip(batch["dataset"], batch["path"])])
    for key, rows in keys.groupby(keys).groups.items():
        dataset, shard = key.split("\0")
        index, arrays = _output_shard(storage.join(output_dirs[dataset], shard), tuple(columns.values()))
        rows = np.asarray(rows)
        pos = index.get_indexer(np.asarray(batch["sample_id"])[rows].astype(str)) if len(index) else np.full(len(rows), -1)
        hit = pos >= 0
        has[rows[hit]] = True
        for col, src in columns.items():
            out[col][rows[hit]] = arrays[src][pos[hit]]
    out[flag] = has
    if drop_missing and not has.all():
        out = {k: np.asarray(v)[has] for k, v in out.items()}
    return out


def attach_prior(batch: dict[str, np.ndarray], prior_dirs: dict[str, str]) -> dict[str, np.ndarray]:
    """finetune: the stored prior predictions (``has_prior``) of each target row."""
    return attach_outputs(batch, prior_dirs, PRIOR_SOURCE_COLUMNS, "has_prior")


def attach_pseudo_gt(batch: dict[str, np.ndarray], pseudo_gt_dirs: dict[str, str]) -> dict[str, np.ndarray]:
    """train-estimator: each target row's pseudo-GT as its SMPL supervision (``has_smpl``);
    rows without pseudo-GT (rejected at reinfer) are dropped."""
    return attach_outputs(batch, pseudo_gt_dirs, PSEUDO_GT_SOURCE_COLUMNS, "has_smpl", drop_missing=True)


def attach_aux_pseudo_gt(batch: dict[str, np.ndarray], aux_dirs: dict[str, str]) -> dict[str, np.ndarray]:
    """pretrain / the aux rows of finetune and train-estimator: an aux3d row without SMPL gets its
    ``annotate-aux`` pseudo-GT as SMPL supervision (``has_smpl``); rows with SMPL keep theirs."""
    temp = {f"aux_{k}": v for k, v in PSEUDO_GT_SOURCE_COLUMNS.items()}
    got = attach_outputs(batch, aux_dirs, temp, "has_aux_pseudo_gt")
    has = np.asarray(batch["has_smpl"], bool)
    use = got.pop("has_aux_pseudo_gt") & ~has
    from annotator.data.batching import stack_list_column

    for col, src in PSEUDO_GT_SOURCE_COLUMNS.items():  # always (N, W) arrays: shards concatenate alike
        old, _ = stack_list_column(batch[col], PARAM_WIDTHS[src])
        got[col] = np.where(use[:, None], got.pop(f"aux_{col}"), old)
    got["has_smpl"] = has | use
    return got


def _shard_rows(shards: list[str]) -> dict[str, int]:
    """Rows of each manifest shard (from the Parquet footers), keyed by filesystem path."""
    return {storage.filesystem(s)[1]: _num_rows(s) for s in shards}


def infer_datasets(ctx: StepContext, step: str, shards: dict[str, list[str]], weights: str,
                   out_of: Callable[[str], str], method: str, vposer_path: str | None = None,
                   label: str | None = None, lifter_path: str | None = None) -> dict:
    """Run the network over every row of the datasets' manifest shards in ONE Ray Data
    pipeline (one actor pool for all datasets); commit one output file per shard."""
    from ray.data import ActorPoolStrategy

    from annotator.data.batching import decode_batch
    from annotator.steps.runtime import read_manifest_dataset

    cfg = ctx.cfg
    for name in shards:
        ctx.fresh_output_dir(step, out_of(name))
        ctx.fresh_output_dir(step, ctx.layout.rejects(name), patterns=(f"{step}-part-*",))
    owner = {storage.filesystem(s)[1]: name for name, ss in shards.items() for s in ss}  # shard -> dataset
    expected = _shard_rows([s for ss in shards.values() for s in ss])
    pending = [s for name, ss in shards.items() for s in ss
               if not storage.exists(storage.join(out_of(name), os.path.basename(s)))]
    total = sum(expected.values())
    done_before = total - sum(expected[storage.filesystem(s)[1]] for s in pending)
    progress = Progress(f"{step}:{'+'.join(shards)}", total, already_done=done_before)
    progress.update(0, force=True)
    if pending:
        body_path = ctx.result("manifest")["body_model_path"]
        # Blocks of a few batches, not one block per shard: lets every actor work and keeps
        # each actor task (and its memory) small however large the shards are.
        ds = read_manifest_dataset(pending).repartition(target_num_rows_per_block=4 * cfg.ray.inference_batch_size)
        # Decode runs as its own CPU task stage, overlapping model execution, never fused into
        # the Predictor actors (Ray Data fuses a task map into the next actor map whenever their
        # resource args match, e.g. num_cpus=1 each on CPU). The repartition after it is the
        # boundary: Ray Data never fuses a streaming repartition into the operator after it
        # (ray.data operator_fusion), and it hands the actors blocks of exactly one batch.
        ds = ds.map_batches(decode_batch, fn_kwargs={"crop": cfg.crop}, batch_size=cfg.ray.inference_batch_size,
                            batch_format="numpy", num_cpus=cfg.ray.decode_cpus,
                            ).repartition(target_num_rows_per_block=cfg.ray.inference_batch_size)
        ds = ds.map_batches(
            Predictor,
            fn_constructor_kwargs={"job_json": cfg.model_dump_json(), "weights": weights, "body_model_path": body_path,
                                   "method": method, "checkpoint_id": _checkpoint_id(weights),
                                   "vposer_path": vposer_path, "label": label, "lifter_path": lifter_path},
            compute=ActorPoolStrategy(size=cfg.ray.inference_actors),
            batch_size=cfg.ray.inference_batch_size, batch_format="numpy",
            num_gpus=cfg.ray.gpus_per_actor or None, num_cpus=0 if cfg.ray.gpus_per_actor else 1,
        )
        buffers: dict[str, list[dict]] = defaultdict(list)
        got: dict[str, int] = defaultdict(int)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            paths = pd.Series(np.asarray(batch["path"]).astype(str))
            for p, idx in paths.groupby(paths).groups.items():
                idx = np.asarray(idx)
                buffers[p].append({k: np.asarray(v)[idx] for k, v in batch.items()})
                got[p] += len(idx)
                progress.update(len(idx))
                if got[p] == expected[p]:
                    name = owner[p]
                    _commit_shard(step, name, p, buffers.pop(p), out_of(name), ctx.layout.rejects(name))
        if buffers:
            raise RuntimeError(f"{step}: rows lost for shards {sorted(buffers)}")
    seconds = progress.seconds
    out = {}
    for name, ss in shards.items():
        rows = sum(_num_rows(storage.join(out_of(name), os.path.basename(s))) for s in ss)
        rejects = sum(_num_rows(storage.join(ctx.layout.rejects(name), f"{step}-{os.path.basename(s)}")) for s in ss)
        manifest_rows = sum(expected[storage.filesystem(s)[1]] for s in ss)
        if rows + rejects != manifest_rows:
            raise RuntimeError(f"{step}:{name}: {rows} output rows + {rejects} rejects != {manifest_rows} manifest rows")
        out[name] = {"rows": rows, "rejects": rejects, "manifest_rows": manifest_rows, "out_dir": out_of(name)}
    rate = round((total - done_before) / max(seconds, 1e-9), 2)
    return {"datasets": out, "seconds": round(seconds, 2), "instances_per_s": rate}


def _num_rows(path: str) -> int:
    if not storage.exists(path):
        return 0
    fs, p = storage.pyarrow_filesystem(path)
    return pq.ParquetFile(p, filesystem=fs).metadata.num_rows


def _checkpoint_id(weights: str) -> str:
    import hashlib

    return os.path.basename(os.path.dirname(weights)) + ":" + hashlib.sha256(storage.read_bytes(weights)).hexdigest()[:12]


def _commit_shard(step: str, dataset: str, shard_path: str, parts: list[dict], out_dir: str, rejects_dir: str) -> int:
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["sample_id"].astype(str), kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    ok = cols["ok"].astype(bool)
    name = os.path.basename(shard_path)
    n_bad = int((~ok).sum())
    rpath = storage.join(rejects_dir, f"{step}-{name}")
    if n_bad:
        bad = np.nonzero(~ok)[0]
        from annotator.data.manifest import rejects_table

        table = rejects_table([str(cols["sample_id"][i]) for i in bad], dataset,
                              [str(cols["reason"][i]) for i in bad],
                              [f"{step}: {cols['error'][i]}" for i in bad],
                              [str(cols.get("source", cols["image_path"])[i]) for i in bad])
        _write_table(table, rpath)
    elif storage.exists(rpath):
        storage.remove(rpath)
    good = {k: v[ok] for k, v in cols.items()}
    _write_table(to_table(good), storage.join(out_dir, name))
    return n_bad


def _write_table(table: pa.Table, path: str) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes_atomic(path, sink.getvalue().to_pybytes())


def run_inference(ctx: StepContext, step: str) -> dict:
    cfg = ctx.cfg
    if step == "predict-prior":
        weights, out_of, method = ctx.result("pretrain")["weights"], ctx.layout.prior, "prior"
    else:  # the step the method predicts with (annotator.methods): finetune, pretrain or train-lifter
        source = ctx.result(METHODS[cfg.method].reinfer_from)
        # with a second round, the first round's pseudo-GT goes to first_round/ (annotator.steps.second_round)
        out_of = ctx.layout.first_round if cfg.second_round.enabled else ctx.layout.pseudo_gt
        for d in ctx.datasets("target"):  # an earlier run's first round / fits are not this pseudo-GT's
            stale = ([] if cfg.second_round.enabled else [ctx.layout.first_round(d.name)]) + \
                ([] if fits_label(cfg) else [ctx.layout.fits(d.name)])
            for path in stale:
                if storage.exists(path):
                    storage.remove(path, recursive=True)
        weights, method = source.get("weights") or source["lifter"], cfg.method
    shards = target_shards(ctx)
    vposer = ctx.result("train-pose-prior")["vposer"] if method == "smplify" and "train-pose-prior" in ctx.cfg.steps else None
    label = first_round_label(cfg) if step == "reinfer" else method
    lifter = ctx.result("train-lifter")["lifter"] if method == "smplify" and cfg.smplify.init == "lifter" else None
    return {**infer_datasets(ctx, step, shards, weights, out_of, method, vposer, label=label, lifter_path=lifter),
            "weights": weights, "method": label}


def write_fits(ctx: StepContext, step: str, fits_path: str) -> dict:
    """The fits dictionary at ``fits_path`` (:class:`~annotator.fitting.in_the_loop.FitDictionary`
    state) as pseudo-GT-schema rows under ``fits/<dataset>/`` (``method`` = :func:`fits_label`),
    one per target manifest row: the same Ray Data pass, commits and rejects as ``reinfer``."""
    return infer_datasets(ctx, step, target_shards(ctx), fits_path, ctx.layout.fits, FITS_PREDICTOR,
                          label=fits_label(ctx.cfg))


def target_shards(ctx: StepContext) -> dict[str, list[str]]:
    """The manifest shards of every target dataset, by dataset."""
    manifest = ctx.result("manifest")["datasets"]
    return {d.name: manifest[d.name]["shards"] for d in ctx.datasets("target")}


def run_predict_prior(ctx: StepContext) -> dict:
    return run_inference(ctx, "predict-prior")


def run_reinfer(ctx: StepContext) -> dict:
    return run_inference(ctx, "reinfer")
