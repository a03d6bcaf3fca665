"""Error reports of a run: 2D error, direct 3D error, indirect error, annotation time.

* **2D error** of every output (``prior`` and ``final``) of every target dataset: mean
  confidence-weighted reprojection error of the predicted keypoints against the dataset's
  2D annotation, in px and divided by the person box size, and per COCO-17 joint.
* **Direct error** wherever the dataset has 3D truth (synthetic sets, whose ground truth
  is written beside them and never read by the pipeline; Parquet/npz sets with SMPL
  parameters): MPJPE (mid-hip aligned, COCO-17 joints), PA-MPJPE, PVE (pelvis aligned),
  per-axis x/y/z errors and per-joint errors, in millimetres, per sample.
* **Indirect error** (NeuralAnnot): the same 3D errors of the estimator trained on the
  pseudo-GT (steps ``train-estimator`` / ``evaluate``) on each ``eval3d`` set.
* **Annotation time**: wall seconds of the steps that make the method's annotations
  (from the state records) and the resulting instances per second.

Written under ``<run>/reports/``: ``per_sample/<dataset>.parquet`` (one row per sample and
output), ``indirect/<eval set>.parquet`` and ``summary.json``.
"""
from __future__ import annotations

import io
import json
import logging
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from annotator import storage
from annotator.methods import annotation_steps
from annotator.body.joints import COCO17_NAMES, TRAIN_CONVENTION, convert, get_convention, select_keypoints
from annotator.data import manifest as manifest_io
from annotator.evaluation import metrics

log = logging.getLogger("annotator")

#: Metres -> millimetres, the unit every 3D error is reported in.
MM = 1000.0
#: 3D errors use the COCO-17 joints (the joints the 2D annotation constrains), mid-hip aligned.
PARAMS = ("global_orient", "body_pose", "betas", "transl")
POSE_PARAMS = PARAMS[:3]
#: Per-sample metric columns (means in summary.json); 3D ones only where truth exists.
METRIC_COLUMNS = ("err2d_px", "err2d_norm", "mpjpe", "pa_mpjpe", "pve", "err_x", "err_y", "err_z", "orient_err_deg")
#: The reference row of every 3D report: knowing nothing but the true global orientation.
BASELINE = "baseline-mean-pose"
#: Orientation errors above this many degrees count as "wrong way round" in the summary.
ORIENT_FLIP_DEG = 90.0
#: Per-sample per-joint columns: COCO-17 lists, NaN where a joint is unannotated / no truth.
JOINT_COLUMNS = ("joint_err2d_px", "joint_err3d_mm")

OUTPUTS = {"prior": "prior", "first_round": "first_round", "final": "pseudo_gt", "fits": "fits"}
"""Report ``output`` label -> the kind of run output it is (:data:`annotator.layout.OUTPUT_KINDS`):
the pretrained network's predictions, the first round's pseudo-GT (with a second round), the pseudo-GT,
and the fits a method keeps besides it (``method: spin``: the final dictionary)."""


# ----------------------------------------------------------------------------- reading


def read_parquet_dir(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    files = storage.listdir(path, ".parquet")
    if not files:
        return pd.DataFrame(columns=columns or [])
    fs, _ = storage.pyarrow_filesystem(files[0])
    tables = [pq.read_table(storage.filesystem(f)[1], filesystem=fs, columns=columns) for f in files]
    return pa.concat_tables(tables).to_pandas()


def read_parquet_file(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """One Parquet file (or only ``columns``) as a DataFrame (clear error naming the file if unreadable)."""
    return manifest_io.read_parquet_file(path, columns).to_pandas()


def stack_column(series: pd.Series, width: int | None = None) -> np.ndarray:
    """A list-valued column -> ``(N, width)`` float32 array (error naming the column on a
    width mismatch)."""
    if len(series) == 0:
        return np.zeros((0, width or 0), np.float32)
    arr = np.stack([np.asarray(v, dtype=np.float32) for v in series.to_numpy()])
    if width is not None and arr.shape[1] != width:
        raise ValueError(f"column {series.name!r}: expected {width} values per row, got {arr.shape[1]}")
    return arr


def read_annotations(run_dir: str, dataset: str) -> tuple[pd.Index, np.ndarray]:
    """The run manifest's annotated 2D keypoints: ``(sample_ids, (N, 17, 3) COCO-17
    (x, y, conf))``. Other conventions are converted by joint name (joints they lack get
    confidence 0). Empty when the manifest is missing."""
    df = read_parquet_dir(storage.join(run_dir, "manifest", dataset),
                          ["sample_id", "keypoints_2d", "keypoint_convention"])
    ids, arrays = [], []
    for conv, group in df.groupby("keypoint_convention", sort=False):
        kps = torch.from_numpy(stack_column(group["keypoints_2d"]).reshape(len(group), -1, 3))
        coco, _ = convert(kps, str(conv), TRAIN_CONVENTION)
        ids.append(group["sample_id"].to_numpy())
        arrays.append(coco.numpy())
    if not arrays:
        return pd.Index([], dtype=object), np.zeros((0, len(COCO17_NAMES), 3), np.float32)
    return pd.Index(np.concatenate(ids)), np.concatenate(arrays)


def align_annotations(sample_ids: Sequence[str], annotations: tuple[pd.Index, np.ndarray]) -> np.ndarray:
    """``(N, 17, 3)`` annotated keypoints for ``sample_ids``; samples the manifest lacks get
    all-zero rows (confidence 0: nothing drawn, nothing scored)."""
    index, kps = annotations
    pos = index.get_indexer(pd.Index(sample_ids)) if len(index) else np.full(len(sample_ids), -1)
    out = np.zeros((len(sample_ids), len(COCO17_NAMES), 3), np.float32)
    out[pos >= 0] = kps[pos[pos >= 0]]
    return out


def pose_tensors(frame: pd.DataFrame | dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """The :data:`POSE_PARAMS` list columns (``prefix + name``) of a frame or a dict of columns
    (ground truth, pseudo-GT, manifest SMPL) as float32 ``(N, width)`` tensors, in its row order."""
    from annotator.data.pseudo_gt import PARAM_WIDTHS

    return {k: torch.as_tensor(np.asarray(stack_column(pd.Series(list(frame[prefix + k])), PARAM_WIDTHS[k]), np.float32))
            for k in POSE_PARAMS}


def ground_truth(dataset: str, manifest_result: dict) -> pd.DataFrame | None:
    """SMPL ground truth of a dataset indexed by ``sample_id`` (columns :data:`PARAMS`), or
    None when it has none: the synthetic truth file, else the manifest's SMPL columns."""
    if manifest_result.get("ground_truth"):
        gt = read_parquet_file(manifest_result["ground_truth"])
        return gt.assign(sample_id=dataset + "/" + gt["annotation_id"].astype(str)).set_index("sample_id")[list(PARAMS)]
    cols = ["sample_id", "smpl_global_orient", "smpl_body_pose", "smpl_betas", "smpl_transl", "has_smpl"]
    frames = [read_parquet_file(s, cols) for s in manifest_result.get("shards", [])]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    df = df[df["has_smpl"].fillna(False).astype(bool)]
    if df.empty:
        return None
    df = df.rename(columns={f"smpl_{k}": k for k in PARAMS}).set_index("sample_id")
    no_transl = df["transl"].isna()  # root-aligned errors do not need it
    df.loc[no_transl, "transl"] = pd.Series([np.zeros(3, np.float32)] * int(no_transl.sum()),
                                            index=df.index[no_transl], dtype=object)
    return df[list(PARAMS)]


# ----------------------------------------------------------------------------- errors


def _stack(series: pd.Series) -> torch.Tensor:
    return torch.from_numpy(stack_column(series))


def joint_errors_2d(predicted: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """``(N, K)`` px distance of predicted ``(N, K, 2)`` to annotated ``(N, K, 3)`` keypoints;
    NaN where the joint is unannotated (confidence 0) or the prediction is not finite."""
    pred = torch.from_numpy(np.asarray(predicted, np.float64))
    ann = torch.from_numpy(np.asarray(annotated, np.float64))
    valid = (ann[..., 2] > 0) & torch.isfinite(pred).all(dim=-1)
    dist = metrics.joint_errors(torch.nan_to_num(pred), ann[..., :2])
    return torch.where(valid, dist, torch.full((), float("nan"), dtype=dist.dtype)).numpy().astype(np.float32)


@torch.no_grad()
def direct_errors(pred: pd.DataFrame, gt: pd.DataFrame, body, batch_size: int = 256) -> pd.DataFrame:
    """Per-sample 3D errors (mm) of ``pred`` rows against ``gt`` rows (same order), with
    the per-joint (mid-hip aligned) errors as a list column ``joint_err3d_mm``."""
    conv = get_convention(TRAIN_CONVENTION)
    root = list(conv.root)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("mpjpe", "pa_mpjpe", "pve", "err_x", "err_y", "err_z",
                                                        "orient_err_deg")}
    per_joint: list[np.ndarray] = []
    for s in range(0, len(pred), batch_size):
        p, g = pred.iloc[s : s + batch_size], gt.iloc[s : s + batch_size]
        # Every error is root-aligned, so the body is posed at the origin: adding a translation
        # first would cost float32 precision (a degenerate camera can put a body kilometres away).
        po = body(**{k: _stack(p[k]) for k in POSE_PARAMS})
        go = body(**{k: _stack(g[k]) for k in POSE_PARAMS})
        pj = select_keypoints(po.keypoints, body.keypoint_names, TRAIN_CONVENTION) * MM
        gj = select_keypoints(go.keypoints, body.keypoint_names, TRAIN_CONVENTION) * MM
        out["mpjpe"].append(metrics.mpjpe(pj, gj, root=root).numpy())
        out["pa_mpjpe"].append(metrics.pa_mpjpe(pj, gj).numpy())
        out["pve"].append(metrics.pve(po.vertices * MM, go.vertices * MM, po.joints[:, 0] * MM, go.joints[:, 0] * MM).numpy())
        axes = metrics.per_axis_errors(pj, gj, root=root)
        for a in ("x", "y", "z"):
            out[f"err_{a}"].append(axes[a].numpy())
        per_joint.append(metrics.joint_errors(metrics.root_align(pj, root), metrics.root_align(gj, root)).numpy())
        out["orient_err_deg"].append(metrics.orientation_error_deg(_stack(p["global_orient"]), _stack(g["global_orient"])).numpy())
    df = pd.DataFrame({k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}, index=pred.index)
    joints = np.concatenate(per_joint) if per_joint else np.zeros((0, len(conv.joint_names)), np.float32)
    df["joint_err3d_mm"] = list(joints.astype(np.float32))
    return df


def _means(df: pd.DataFrame) -> dict[str, float]:
    out = {c: round(float(df[c].mean()), 3) for c in METRIC_COLUMNS if c in df and df[c].notna().any()}
    if "orient_err_deg" in out:
        orient = df["orient_err_deg"].dropna()
        out["orient_median_deg"] = round(float(orient.median()), 3)
        out["orient_over_90"] = round(float((orient > ORIENT_FLIP_DEG).mean()), 4)
    return out


def skill(output: dict, baseline: dict | None) -> float | None:
    """1 - PA-MPJPE(output) / PA-MPJPE(baseline-mean-pose): 0 = no better than a constant pose."""
    if not baseline or "pa_mpjpe" not in output or not baseline.get("pa_mpjpe"):
        return None
    return round(1.0 - output["pa_mpjpe"] / baseline["pa_mpjpe"], 4)


def mean_aux3d_pose(cfg, manifest_result: dict) -> np.ndarray | None:
    """Mean axis-angle ``body_pose`` (69,) of the job's aux3d rows with SMPL, or None."""
    poses = []
    for d in cfg.datasets_with_role("aux3d"):
        made = manifest_result["datasets"].get(d.name)
        if not made:
            continue
        for shard in made.get("shards", []):
            df = read_parquet_file(shard, ["smpl_body_pose", "has_smpl"])
            df = df[df["has_smpl"].fillna(False).astype(bool) & df["smpl_body_pose"].notna()]
            if len(df):
                poses.append(stack_column(df["smpl_body_pose"], 69))
    if not poses:
        return None
    return np.concatenate(poses).mean(axis=0).astype(np.float32)


def baseline_predictions(gt: pd.DataFrame, mean_pose: np.ndarray) -> pd.DataFrame:
    """The ``baseline-mean-pose`` reference for ``gt`` rows: the mean aux3d body pose, zero
    betas, and the TRUE global orientation (so it isolates articulated-pose skill)."""
    n = len(gt)
    return pd.DataFrame({"global_orient": list(stack_column(gt["global_orient"], 3)),
                         "body_pose": [mean_pose] * n,
                         "betas": [np.zeros(len(stack_column(gt["betas"][:1])[0]) if n else 10, np.float32)] * n,
                         "transl": list(stack_column(gt["transl"], 3))}, index=gt.index)


def baseline_errors(gt: pd.DataFrame | None, sample_ids: pd.Index, mean_pose: np.ndarray | None, body) -> dict | None:
    """Mean 3D errors of ``baseline-mean-pose`` on the ``sample_ids`` that have truth."""
    if gt is None or mean_pose is None:
        return None
    common = sample_ids.intersection(gt.index)
    if not len(common):
        return None
    g = gt.loc[common]
    errs = direct_errors(baseline_predictions(g, mean_pose), g, body)
    return {"method": BASELINE, "instances": int(len(common)), **_means(errs)}


def _joint_means(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per COCO-17 joint: mean over the samples that have a value (NaN-aware)."""
    out = {}
    for col in JOINT_COLUMNS:
        if col not in df or df[col].isna().all():
            continue
        arr = stack_column(df[col].dropna(), len(COCO17_NAMES))
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(np.isfinite(arr), arr, np.nan), axis=0) if len(arr) else arr
        out[col] = {name: (round(float(v), 3) if np.isfinite(v) else None) for name, v in zip(COCO17_NAMES, mean)}
    return out


def output_errors(df: pd.DataFrame, annotations: tuple[pd.Index, np.ndarray], gt: pd.DataFrame | None,
                  body) -> pd.DataFrame:
    """Per-sample report rows of one output (index ``sample_id``): 2D error (mean and per
    joint) and, where ``gt`` has the sample, the direct 3D errors."""
    df = df.set_index("sample_id")
    rep = df[["err2d_px", "err2d_norm"]].copy()
    pred2d = stack_column(df["keypoints_2d"], 2 * len(COCO17_NAMES)).reshape(len(df), -1, 2)
    rep["joint_err2d_px"] = list(joint_errors_2d(pred2d, align_annotations(df.index, annotations)))
    if gt is not None:
        common = df.index.intersection(gt.index)
        rep = rep.join(direct_errors(df.loc[common], gt.loc[common], body))
    return rep


# ----------------------------------------------------------------------------- the run


def annotation_time(cfg, step_seconds: dict[str, float], instances: int) -> dict:
    """Wall time of the steps that made this job's annotations and instances per second."""
    steps = {s: round(float(step_seconds[s]), 2) for s in annotation_steps(cfg)  # ``manifest`` is common to all
             if s in step_seconds and s in cfg.steps}
    total = sum(steps.values())
    return {"method": cfg.method_label, "steps": steps, "seconds": round(total, 2), "instances": int(instances),
            "instances_per_s": round(instances / total, 3) if total > 0 else None}


def _write_parquet(table: pd.DataFrame, path: str) -> None:
    sink = io.BytesIO()
    table.to_parquet(sink, index=False)
    storage.write_bytes_atomic(path, sink.getvalue())


def build_reports(layout, cfg, manifest_result: dict, body, step_seconds: dict[str, float] | None = None,
                  indirect: bool = True) -> dict:
    """Compute the reports of a run; returns the summary (also written to summary.json).

    ``indirect``: whether ``evaluation/`` holds predictions of this job's own estimator."""
    summary: dict = {"method": cfg.method_label, "datasets": {}, "indirect": {}}
    headline = []
    instances = 0
    pgt_cols = ["sample_id", "err2d_px", "err2d_norm", "keypoints_2d", *PARAMS, "method"]
    mean_pose = mean_aux3d_pose(cfg, manifest_result)
    for d in [d for d in cfg.datasets_with_role("target") if d.name in manifest_result["datasets"]]:
        made = manifest_result["datasets"][d.name]
        instances += int(made["rows"])
        gt = ground_truth(d.name, made)
        annotations = read_annotations(layout.root, d.name)
        frames = []
        for which, kind in OUTPUTS.items():
            df = read_parquet_dir(layout.output(kind, d.name), pgt_cols)
            if df.empty:
                continue
            rep = output_errors(df, annotations, gt, body)
            rep["output"], rep["method"] = which, "prior" if which == "prior" else str(df["method"].iloc[0])
            frames.append(rep.reset_index())
        if not frames:
            continue
        table = pd.concat(frames, ignore_index=True)
        _write_parquet(table, layout.per_sample(d.name))
        baseline = baseline_errors(gt, pd.Index(table["sample_id"].unique()), mean_pose, body)
        ds_summary = {"instances": int(table["sample_id"].nunique()), "has_3d_truth": gt is not None,
                      "outputs": {w: {"method": str(g["method"].iloc[0]), **_means(g), "per_joint": _joint_means(g)}
                                  for w, g in table.groupby("output")}}
        if baseline:
            ds_summary["baseline"] = baseline
            for o in ds_summary["outputs"].values():
                o["skill"] = skill(o, baseline)
        prior, final = ds_summary["outputs"].get("prior"), ds_summary["outputs"].get("final")
        if prior and final:
            ds_summary["finetune_lowers_2d_error"] = bool(final["err2d_px"] < prior["err2d_px"])
            line = f"{d.name}: 2D err prior {prior['err2d_px']:.1f}px -> {final['method']} {final['err2d_px']:.1f}px"
            if "mpjpe" in final:
                line += f", MPJPE {prior['mpjpe']:.0f} -> {final['mpjpe']:.0f} mm"
            if final.get("skill") is not None:
                line += (f", PA-MPJPE {final['pa_mpjpe']:.0f} mm vs {BASELINE} {baseline['pa_mpjpe']:.0f}"
                         f" (skill {final['skill']:+.2f}), orient median {final['orient_median_deg']:.0f} deg")
            headline.append(line)
        summary["datasets"][d.name] = ds_summary
    eval_sets = cfg.datasets_with_role("eval3d") if indirect else []
    if not indirect:  # evaluation/ holds an older run's estimator: its report goes too
        for d in cfg.datasets_with_role("eval3d"):
            stale = layout.indirect(d.name)
            if storage.exists(stale):
                storage.remove(stale)
    for d in [d for d in eval_sets if d.name in manifest_result["datasets"]]:
        df = read_parquet_dir(layout.evaluation(d.name), pgt_cols)
        gt = ground_truth(d.name, manifest_result["datasets"][d.name])
        if df.empty or gt is None:
            continue
        rep = output_errors(df, read_annotations(layout.root, d.name), gt, body).reset_index()
        _write_parquet(rep, layout.indirect(d.name))
        summary["indirect"][d.name] = {"pseudo_gt_method": cfg.method_label, "instances": int(len(rep)),
                                       "estimator": {**_means(rep), "per_joint": _joint_means(rep)}}
        baseline = baseline_errors(gt, pd.Index(rep["sample_id"]), mean_pose, body)
        est = summary["indirect"][d.name]["estimator"]
        if baseline:
            summary["indirect"][d.name]["baseline"] = baseline
            est["skill"] = skill(est, baseline)
        if "mpjpe" in est:
            headline.append(f"indirect ({d.name}): MPJPE {est['mpjpe']:.0f} mm, PA-MPJPE {est['pa_mpjpe']:.0f} mm"
                            + (f" (skill {est['skill']:+.2f})" if est.get("skill") is not None else ""))
    if step_seconds is not None:
        summary["annotation_time"] = annotation_time(cfg, step_seconds, instances)
    summary["headline"] = "; ".join(headline)
    storage.write_bytes_atomic(layout.summary(),
                               json.dumps(summary, indent=2, sort_keys=True).encode())
    return summary
