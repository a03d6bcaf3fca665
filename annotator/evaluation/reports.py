"""Error reports of a run: 2D error of every output, direct 3D error where truth exists.

* 2D error: mean confidence-weighted reprojection error of the predicted keypoints against
  the dataset's 2D annotation, in px and divided by the person box size.
* Direct error (synthetic datasets, whose ground truth is written beside them and never
  read by the pipeline): MPJPE (mid-hip aligned, COCO-17 joints), PA-MPJPE, PVE (pelvis
  aligned) and per-axis x/y/z errors, in millimetres, per sample.

Written under ``<run>/reports/``: ``per_sample/<dataset>.parquet`` and ``summary.json``.
"""
from __future__ import annotations

import io
import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from annotator import storage
from annotator.body.joints import get_convention, select_keypoints
from annotator.data import manifest as manifest_io
from annotator.evaluation import metrics

log = logging.getLogger("annotator")

#: Metres -> millimetres, the unit every 3D error is reported in.
MM = 1000.0
#: 3D errors use the COCO-17 joints (the joints the 2D annotation constrains), mid-hip aligned.
EVAL_CONVENTION = "coco17"
PARAMS = ("global_orient", "body_pose", "betas", "transl")


def read_parquet_dir(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    files = storage.listdir(path, ".parquet")
    if not files:
        return pd.DataFrame(columns=columns or [])
    fs, _ = storage.pyarrow_filesystem(files[0])
    tables = [pq.read_table(storage.filesystem(f)[1], filesystem=fs, columns=columns) for f in files]
    return pa.concat_tables(tables).to_pandas()


def read_parquet_file(path: str) -> pd.DataFrame:
    """One Parquet file as a DataFrame (clear error naming the file if unreadable)."""
    return manifest_io.read_parquet_file(path).to_pandas()


def _stack(series: pd.Series) -> torch.Tensor:
    return torch.from_numpy(np.stack(series.to_numpy()).astype(np.float32))


@torch.no_grad()
def direct_errors(pred: pd.DataFrame, gt: pd.DataFrame, body, batch_size: int = 256) -> pd.DataFrame:
    """Per-sample 3D errors (mm) of ``pred`` rows against ``gt`` rows (same order)."""
    conv = get_convention(EVAL_CONVENTION)
    root = list(conv.root)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("mpjpe", "pa_mpjpe", "pve", "err_x", "err_y", "err_z")}
    for s in range(0, len(pred), batch_size):
        p, g = pred.iloc[s : s + batch_size], gt.iloc[s : s + batch_size]
        po = body(**{k: _stack(p[k]) for k in PARAMS})
        go = body(**{k: _stack(g[k]) for k in PARAMS})
        pj = select_keypoints(po.keypoints, body.keypoint_names, EVAL_CONVENTION) * MM
        gj = select_keypoints(go.keypoints, body.keypoint_names, EVAL_CONVENTION) * MM
        out["mpjpe"].append(metrics.mpjpe(pj, gj, root=root).numpy())
        out["pa_mpjpe"].append(metrics.pa_mpjpe(pj, gj).numpy())
        out["pve"].append(metrics.pve(po.vertices * MM, go.vertices * MM, po.joints[:, 0] * MM, go.joints[:, 0] * MM).numpy())
        axes = metrics.per_axis_errors(pj, gj, root=root)
        for a in ("x", "y", "z"):
            out[f"err_{a}"].append(axes[a].numpy())
    return pd.DataFrame({k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}, index=pred.index)


def _means(df: pd.DataFrame, cols: list[str]) -> dict[str, float]:
    return {c: round(float(df[c].mean()), 3) for c in cols if c in df and df[c].notna().any()}


def build_reports(layout, cfg, manifest_result: dict, body) -> dict:
    """Compute the reports of a run; returns the summary (also written to summary.json)."""
    summary: dict = {"datasets": {}}
    per_sample_cols = ["sample_id", "err2d_px", "err2d_norm"]
    headline = []
    for d in [d for d in cfg.datasets_with_role("target") if d.name in manifest_result["datasets"]]:
        outputs = {"prior": layout.prior(d.name), "final": layout.pseudo_gt(d.name)}
        frames = []
        gt_path = manifest_result["datasets"][d.name].get("ground_truth")
        gt = read_parquet_file(gt_path) if gt_path else None
        if gt is not None:
            gt = gt.assign(sample_id=d.name + "/" + gt["annotation_id"].astype(str)).set_index("sample_id")
        for which, path in outputs.items():
            cols = per_sample_cols + list(PARAMS) + ["method"]
            df = read_parquet_dir(path, cols)
            if df.empty:
                continue
            method = df["method"].iloc[0] if which == "final" else "prior"
            df = df.set_index("sample_id")
            rep = df[["err2d_px", "err2d_norm"]].copy()
            if gt is not None:
                common = df.index.intersection(gt.index)
                rep = rep.join(direct_errors(df.loc[common], gt.loc[common], body))
            rep["output"], rep["method"] = which, method
            frames.append(rep.reset_index())
        if not frames:
            continue
        table = pd.concat(frames, ignore_index=True)
        sink = io.BytesIO()
        table.to_parquet(sink, index=False)
        storage.write_bytes_atomic(storage.join(layout.reports(), "per_sample", f"{d.name}.parquet"), sink.getvalue())
        metric_cols = ["err2d_px", "err2d_norm", "mpjpe", "pa_mpjpe", "pve", "err_x", "err_y", "err_z"]
        ds_summary = {"instances": int(table["sample_id"].nunique()),
                      "outputs": {w: {"method": str(g["method"].iloc[0]), **_means(g, metric_cols)}
                                  for w, g in table.groupby("output")}}
        prior, final = ds_summary["outputs"].get("prior"), ds_summary["outputs"].get("final")
        if prior and final:
            ds_summary["finetune_lowers_2d_error"] = bool(final["err2d_px"] < prior["err2d_px"])
            headline.append(f"{d.name}: 2D err prior {prior['err2d_px']:.1f}px -> final {final['err2d_px']:.1f}px"
                            + (f", MPJPE {prior['mpjpe']:.0f} -> {final['mpjpe']:.0f} mm" if "mpjpe" in final else ""))
        summary["datasets"][d.name] = ds_summary
    summary["headline"] = "; ".join(headline)
    storage.write_bytes_atomic(storage.join(layout.reports(), "summary.json"),
                               json.dumps(summary, indent=2, sort_keys=True).encode())
    return summary
