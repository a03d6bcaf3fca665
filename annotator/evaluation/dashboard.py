"""The offline HTML quality dashboard of a run (``annotator report RUN_DIR``).

One self-contained HTML file: inline CSS, inline SVG charts drawn with matplotlib
(:mod:`annotator.evaluation.plots`; glyphs as paths, hover text on every bar), mesh
overlays embedded as base64 PNG and a few lines of inline script (sortable tables). No
CDN, fonts or any other external resource, so it opens from disk, an object store or
an e-mail attachment alike. Per target dataset it shows:

* the output comparison table (prior vs final): 2D error in px and divided by the box
  size, and where the dataset has 3D truth MPJPE, PA-MPJPE, PVE and x/y/z errors in mm
  (means over samples, as ``reports/summary.json``);
* histograms of the 2D error (and MPJPE when present) per output;
* per-joint 2D error bars: each output's predicted COCO-17 ``keypoints_2d`` against the
  manifest's annotated keypoints of the same ``sample_id`` (joints with confidence > 0);
* the worst samples (largest MPJPE when present, else largest 2D error) of the final
  output with prior and final mesh overlays side by side.

Inputs come from the run directory only (see :mod:`annotator.evaluation.reports` for the
per-sample table; when a run has no ``reports/`` the 2D columns of the outputs are used).
"""
from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from annotator import storage
from annotator.body.joints import COCO17_NAMES, TRAIN_CONVENTION
from annotator.config import STEPS
from annotator.evaluation import overlay, plots
from annotator.evaluation.metrics import joint_errors
from annotator.evaluation.reports import OUTPUTS, read_parquet_dir, read_parquet_file
from annotator.layout import RunLayout

log = logging.getLogger("annotator")

OUTPUT_COLOURS = {"prior": "#7f93b8", "first_round": "#9bbf6a", "final": "#e07b39", "fits": "#b565a7"}


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    unit: str
    digits: int


METRICS = (
    Metric("err2d_px", "2D error", "px", 1),
    Metric("err2d_norm", "2D error / box size", "", 3),
    Metric("mpjpe", "MPJPE", "mm", 1),
    Metric("pa_mpjpe", "PA-MPJPE", "mm", 1),
    Metric("pve", "PVE", "mm", 1),
    Metric("err_x", "x error", "mm", 1),
    Metric("err_y", "y error", "mm", 1),
    Metric("err_z", "z error", "mm", 1),
    Metric("orient_err_deg", "orientation error", "deg", 1),
)
METRIC_BY_COLUMN = {m.column: m for m in METRICS}

HIST_BINS = 20
HIST_CLIP_PERCENTILE = 99.0
"""Histogram range ends at this percentile of the pooled values; larger values are
counted in the last bin (labelled as an overflow) so one outlier does not squash the
chart."""
WORST_TILE = 240
"""Longest image side (px) of the embedded worst-sample overlays (keeps the HTML small)."""


# ----------------------------------------------------------------------------- data


@dataclass
class DatasetReport:
    """Everything the dashboard shows for one dataset."""

    name: str
    per_sample: pd.DataFrame
    """One row per (sample, output): sample_id, output, method and the metric columns."""
    per_joint: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Index: COCO-17 joint names; columns ``<output>`` (mean px) and ``<output>_n``."""
    worst_key: str = "err2d_px"
    """Metric the worst samples are ranked by (``mpjpe`` when the dataset has 3D truth)."""
    worst: list[dict] = field(default_factory=list)
    """Worst samples, worst first: ``{"sample_id", "values": {output: metric},
    "tiles": {output: OverlayTile}}``."""


def dataset_names(run_dir: str) -> list[str]:
    """Datasets with an output or a report in the run, sorted."""
    layout = RunLayout(run_dir)
    names = set()
    for kind in OUTPUTS.values():
        root = layout.output_dir(kind)
        names.update(p.rstrip("/").rsplit("/", 1)[-1] for p in storage.listdir(root))
    names.update(p.rsplit("/", 1)[-1][: -len(".parquet")]
                 for p in storage.listdir(layout.per_sample_dir(), ".parquet"))
    return sorted(n for n in names if not n.startswith((".", "_")))


def read_outputs(run_dir: str, dataset: str, columns: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """``{"prior": df, "final": df}`` of the outputs the run has for ``dataset``."""
    layout, out = RunLayout(run_dir), {}
    for label, kind in OUTPUTS.items():
        df = read_parquet_dir(layout.output(kind, dataset), columns)
        if not df.empty:
            out[label] = df
    return out


def per_sample_table(run_dir: str, dataset: str, outputs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The run's ``reports/per_sample/<dataset>.parquet``, or (no report step in the job)
    the same table's 2D columns built from the outputs themselves."""
    path = RunLayout(run_dir).per_sample(dataset)
    if storage.exists(path):
        df = read_parquet_file(path)
        missing = {"sample_id", "output"} - set(df.columns)
        if missing:
            raise ValueError(f"{storage.redact(path)}: missing columns {sorted(missing)}")
        return df
    frames = []
    for label, df in outputs.items():
        part = df[["sample_id", "err2d_px", "err2d_norm"]].copy()
        part["output"] = label
        part["method"] = "prior" if label == "prior" else df["method"]
        frames.append(part)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["sample_id", "output", "method"])


def comparison_table(per_sample: pd.DataFrame) -> pd.DataFrame:
    """Per output: method, sample count and the mean of every metric column present
    (NaN values skipped, as in ``summary.json``). Index: output, prior first."""
    cols = [m.column for m in METRICS if m.column in per_sample and per_sample[m.column].notna().any()]
    grouped = per_sample.groupby("output", sort=False)
    table = grouped[cols].mean() if cols else pd.DataFrame(index=list(grouped.groups))
    table.insert(0, "samples", grouped["sample_id"].nunique())
    table.insert(0, "method", grouped["method"].first() if "method" in per_sample else "")
    order = [o for o in OUTPUTS if o in table.index] + [o for o in table.index if o not in OUTPUTS]
    return table.loc[order]


def per_joint_errors(predicted: np.ndarray, annotated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean 2D distance per joint over the samples where the joint is annotated.

    ``predicted`` ``(N, K, 2)`` px, ``annotated`` ``(N, K, 3)`` (x, y, confidence) px.
    Returns ``(mean_px (K,), count (K,))``; a joint never annotated gets NaN. Predictions
    that are not finite (failed samples) are skipped too.
    """
    pred = torch.from_numpy(np.asarray(predicted, np.float64))
    ann = torch.from_numpy(np.asarray(annotated, np.float64))
    valid = (ann[..., 2] > 0) & torch.isfinite(pred).all(dim=-1)
    dist = torch.where(valid, joint_errors(torch.nan_to_num(pred), ann[..., :2]), torch.zeros(()))
    count = valid.sum(dim=0)
    mean = torch.where(count > 0, dist.sum(dim=0) / count.clamp(min=1), torch.full((), float("nan")))
    return mean.numpy(), count.numpy()


def per_joint_table(outputs: dict[str, pd.DataFrame], annotations: tuple[pd.Index, np.ndarray]) -> pd.DataFrame:
    """Per-joint mean 2D error of every output against the manifest annotation."""
    table = pd.DataFrame(index=pd.Index(COCO17_NAMES, name="joint"))
    if not len(annotations[0]):
        return table
    for label, df in outputs.items():
        conv = set(df["keypoint_convention"]) if "keypoint_convention" in df else {TRAIN_CONVENTION}
        if conv != {TRAIN_CONVENTION}:
            raise ValueError(f"{label} output: keypoint_convention {sorted(conv)}, "
                             f"expected {TRAIN_CONVENTION!r}")
        pred = overlay.stack_column(df["keypoints_2d"], 2 * len(COCO17_NAMES)).reshape(len(df), -1, 2)
        ann = overlay.align_annotations(df["sample_id"].to_numpy(), annotations)
        mean, count = per_joint_errors(pred, ann)
        table[label], table[f"{label}_n"] = mean, count
    return table


def worst_samples(per_sample: pd.DataFrame, k: int) -> tuple[list[str], str]:
    """The ``k`` final-output sample ids with the largest MPJPE (when the dataset has 3D
    truth) or else 2D error, worst first, and the column used."""
    final = per_sample[per_sample["output"] == "final"]
    if final.empty:
        final = per_sample[per_sample["output"] == per_sample["output"].iloc[0]] if len(per_sample) else final
    key = "mpjpe" if "mpjpe" in final and final["mpjpe"].notna().any() else "err2d_px"
    ranked = final.dropna(subset=[key]).sort_values([key, "sample_id"], ascending=[False, True], kind="stable")
    return ranked["sample_id"].head(k).tolist(), key


def read_steps(run_dir: str) -> list[dict]:
    """``state/<step>.json`` records (step, seconds, completed_at), in completion order."""
    steps = []
    for path in storage.listdir(RunLayout(run_dir).state_dir(), ".json"):
        try:
            rec = storage.read_json(path)
        except (OSError, ValueError) as err:
            log.warning("dashboard: %s unreadable: %s", storage.redact(path), err)
            continue
        steps.append({"step": rec.get("step", path.rsplit("/", 1)[-1][:-5]), "seconds": rec.get("seconds"),
                      "completed_at": rec.get("completed_at", "")})
    return sorted(steps, key=lambda s: str(s["completed_at"]))


# ----------------------------------------------------------------------------- charts


def _fmt(value: float, digits: int = 1) -> str:
    if value is None or not np.isfinite(value):
        return "&ndash;"
    return f"{value:,.{digits}f}"


def _float(value) -> float:
    """``value`` as a float, NaN when missing or not a number (shown as a dash)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def histogram_svg(values: dict[str, np.ndarray], x_title: str, bins: int = HIST_BINS) -> str:
    """Inline SVG histogram of each output's values over shared bins (:func:`plots.histogram`)."""
    chart = plots.histogram(values, x_title, OUTPUT_COLOURS, bins, HIST_CLIP_PERCENTILE)
    return chart.svg("chart histogram") if chart else '<p class="note">no values</p>'


def bar_chart_svg(categories: Sequence[str], series: dict[str, np.ndarray], y_title: str, unit: str = "px") -> str:
    """Inline SVG grouped bars: one group per category, one bar per output (:func:`plots.grouped_bars`)."""
    chart = plots.grouped_bars(categories, series, y_title, unit, OUTPUT_COLOURS)
    return chart.svg("chart bars") if chart else '<p class="note">no annotated joints</p>'


# ----------------------------------------------------------------------------- HTML

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 6px}.note{color:#666;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#eee;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer}.charts{display:flex;flex-wrap:wrap;gap:16px}
svg.chart{background:#fff;border:1px solid #ddd;max-width:100%;height:auto}
img.overlay{display:block;max-width:100%}.headline{font-weight:600}
"""
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
      th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        var nx = parseFloat(x), ny = parseFloat(y);
        if (!isNaN(nx) && !isNaN(ny)) { return dir * (nx - ny); }
        return dir * String(x).localeCompare(String(y));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
document.documentElement.setAttribute("data-dashboard", "ready");
"""


def _cell(value, digits: int = 1) -> str:
    if isinstance(value, (int, np.integer)):
        return f'<td class="num" data-v="{int(value)}">{int(value):,}</td>'
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f'<td class="num" data-v="{v if np.isfinite(v) else ""}">{_fmt(v, digits)}</td>'
    return f'<td data-v="{html.escape(str(value))}">{html.escape(str(value))}</td>'


def _header(col: str) -> str:
    m = METRIC_BY_COLUMN.get(col)
    if m is None:
        return html.escape(col)
    return html.escape(m.label) + (f" ({m.unit})" if m.unit else "")


def comparison_html(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    head = "<th>output</th>" + "".join(f"<th>{_header(c)}</th>" for c in cols)
    rows = []
    for output, row in table.iterrows():
        cells = [_cell(output)] + [_cell(row[c], METRIC_BY_COLUMN[c].digits) if c in METRIC_BY_COLUMN
                                   else _cell(row[c]) for c in cols]
        rows.append(f'<tr data-output="{html.escape(str(output))}">' + "".join(cells) + "</tr>")
    return (f'<table class="comparison sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def per_joint_html(table: pd.DataFrame) -> str:
    outputs = [c for c in table.columns if not c.endswith("_n")]
    if not outputs:
        return '<p class="note">no manifest annotation to compare with</p>'
    chart = bar_chart_svg(list(table.index), {o: table[o].to_numpy() for o in outputs}, "mean 2D error (px)")
    head = "<th>joint</th>" + "".join(f"<th>{html.escape(o)} (px)</th><th>{html.escape(o)} joints</th>"
                                      for o in outputs)
    rows = "".join("<tr>" + _cell(j) + "".join(_cell(float(r[o]), 1) + _cell(int(r[f"{o}_n"])) for o in outputs)
                   + "</tr>" for j, r in table.iterrows())
    return (chart + '<details><summary>per-joint table</summary><table class="per-joint sortable">'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></details>")


def per_joint_3d_html(per_sample: pd.DataFrame) -> str:
    """Per-joint mean 3D error (mid-hip aligned, mm) of each output, from the report's
    ``joint_err3d_mm`` column (present where the dataset has 3D truth)."""
    col = "joint_err3d_mm"
    if col not in per_sample or per_sample[col].isna().all():
        return ""
    series = {}
    for output, g in per_sample.groupby("output", sort=False):
        vals = g[col].dropna()
        if len(vals):
            series[str(output)] = np.nanmean(np.stack([np.asarray(v, np.float64) for v in vals]), axis=0)
    chart = bar_chart_svg(list(COCO17_NAMES), series, "mean 3D error (mm)", unit="mm")
    return "<h3>3D error per joint (COCO-17, mid-hip aligned)</h3>" + chart


def run_overview_html(summary: dict) -> str:
    """The method, its annotation time and the indirect error (from ``summary.json``)."""
    parts = []
    at = summary.get("annotation_time")
    if at:
        order = {step: i for i, step in enumerate(STEPS)}  # pipeline order (summary.json sorts keys)
        rows = "".join(f"<tr>{_cell(step)}{_cell(float(sec), 1)}</tr>"
                       for step, sec in sorted(at["steps"].items(), key=lambda kv: order.get(kv[0], len(order))))
        rate = at.get("instances_per_s")
        parts.append(f"<h2>Annotation time ({html.escape(str(at['method']))})</h2>"
                     f'<p class="note">{at["instances"]:,} target instances in {at["seconds"]:,.1f} s of annotation '
                     f"steps ({'n/a' if rate is None else f'{rate:,.2f}'} instances/s)</p>"
                     '<table class="annotation-time"><thead><tr><th>step</th><th>time (s)</th></tr></thead>'
                     f"<tbody>{rows}</tbody></table>")
    indirect = summary.get("indirect") or {}
    if indirect:
        cols = [c for c in ("mpjpe", "pa_mpjpe", "pve", "err2d_px") if c in METRIC_BY_COLUMN]
        head = "<th>test set</th><th>pseudo-GT of</th><th>instances</th>" + "".join(f"<th>{_header(c)}</th>" for c in cols)
        rows = "".join(
            f"<tr>{_cell(name)}{_cell(str(r.get('pseudo_gt_method', '')))}{_cell(int(r.get('instances', 0)))}"
            + "".join(_cell(_float(r["estimator"].get(c)), METRIC_BY_COLUMN[c].digits) for c in cols) + "</tr>"
            for name, r in indirect.items())
        parts.append('<h2>Indirect error</h2><p class="note">An estimator of the same architecture trained from '
                     "scratch on the aux3d sets + this run's pseudo-GT, tested on held-out 3D sets (NeuralAnnot).</p>"
                     f'<table class="indirect sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>')
    return "".join(parts)


def worst_html(report: DatasetReport) -> str:
    if not report.worst:
        return '<p class="note">no worst samples listed (no rows, or --worst 0)</p>'
    key = report.worst_key
    metric = METRIC_BY_COLUMN[key]
    head = (f"<th>#</th><th>sample</th><th>{_header(key)} final</th><th>{_header(key)} prior</th>"
            "<th>prior mesh</th><th>final mesh</th>")
    rows = []
    for i, w in enumerate(report.worst, 1):
        imgs = "".join(f'<td>{_img(w["tiles"].get(o))}</td>' for o in ("prior", "final"))
        values = [w["values"].get(o, float("nan")) for o in ("final", "prior")]
        rows.append(f"<tr>{_cell(i)}{_cell(w['sample_id'])}" + "".join(_cell(v, metric.digits) for v in values)
                    + f"{imgs}</tr>")
    return (f'<p class="note">Worst final-output samples by {html.escape(metric.label)}; white rings: annotated '
            "keypoints, coloured dots: predicted keypoints; right half of each image: side view (camera on the left)."
            f'</p><table class="worst sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _img(tile) -> str:
    if tile is None:
        return '<span class="note">n/a</span>'
    data = base64.b64encode(overlay.png_bytes(tile.compose())).decode("ascii")
    return f'<img class="overlay" alt="{html.escape(tile.key)}" src="data:image/png;base64,{data}">'


def reference_html(ds_summary: dict | None) -> str:
    """How far each output is from knowing nothing: the ``baseline-mean-pose`` row (mean aux3d
    body pose, zero betas, true global orientation), each output's skill (1 - PA-MPJPE /
    baseline PA-MPJPE) and its orientation error median and share above 90 degrees."""
    base = (ds_summary or {}).get("baseline")
    if not base:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("output", "method", "MPJPE (mm)", "PA-MPJPE (mm)", "skill",
                                             "orientation median (deg)", "share > 90 deg"))
    rows = [(o, v) for o, v in ds_summary.get("outputs", {}).items()] + [("reference", {**base, "skill": 0.0})]
    body = "".join(
        f'<tr data-output="{html.escape(str(o))}">' + _cell(o) + _cell(v.get("method", "")) + _cell(_float(v.get("mpjpe")), 1)
        + _cell(_float(v.get("pa_mpjpe")), 1) + _cell(_float(v.get("skill")), 2) + _cell(_float(v.get("orient_median_deg")), 1)
        + _cell(_float(v.get("orient_over_90")), 2) + "</tr>" for o, v in rows)
    return ("<h3>Against knowing nothing (baseline-mean-pose)</h3>"
            f'<table class="reference"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def dataset_html(report: DatasetReport, ds_summary: dict | None = None) -> str:
    ps = report.per_sample
    parts = [f'<section class="dataset" id="ds-{html.escape(report.name)}"><h2>Dataset {html.escape(report.name)}</h2>',
             "<h3>Outputs</h3>", comparison_html(comparison_table(ps)), reference_html(ds_summary)]
    hists = []
    for col in ("err2d_px", "mpjpe"):
        if col in ps and ps[col].notna().any():
            m = METRIC_BY_COLUMN[col]
            values = {o: g[col].to_numpy(np.float64) for o, g in ps.groupby("output", sort=False)}
            hists.append(f"<div><h3>{html.escape(m.label)} per sample</h3>"
                         f"{histogram_svg(values, f'{m.label} ({m.unit})')}</div>")
    parts.append('<div class="charts">' + "".join(hists) + "</div>")
    parts.append("<h3>2D error per joint (COCO-17, annotated joints only)</h3>" + per_joint_html(report.per_joint))
    parts.append(per_joint_3d_html(ps))
    parts.append("<h3>Worst samples</h3>" + worst_html(report) + "</section>")
    return "".join(parts)


def build_report(run_dir: str, dataset: str, worst: int, body) -> DatasetReport:
    """Gather one dataset's tables and overlays."""
    outputs = read_outputs(run_dir, dataset)
    per_sample = per_sample_table(run_dir, dataset, outputs)
    annotations = overlay.read_annotations(run_dir, dataset)
    report = DatasetReport(dataset, per_sample, per_joint_table(outputs, annotations))
    if worst <= 0 or per_sample.empty:
        return report
    ids, key = worst_samples(per_sample, worst)
    report.worst_key = key
    values = per_sample[per_sample["sample_id"].isin(ids)].pivot_table(index="sample_id", columns="output",
                                                                      values=key, aggfunc="first")
    report.worst = [{"sample_id": s, "tiles": {},
                     "values": {o: float(values.loc[s, o]) for o in values.columns}} for s in ids]
    if body is None:
        return report
    for label, df in outputs.items():
        rows = df[df["sample_id"].isin(ids)]
        tiles = {t.key: t for t in overlay.render_tiles(rows, body, annotations, tile=WORST_TILE, per_sample=True)}
        for w in report.worst:
            w["tiles"][label] = tiles.get(w["sample_id"])
    return report


def build_dashboard(run_dir: str, worst: int = 6, body=None) -> str:
    """The dashboard HTML of a run (``body``: the run's body model, loaded when None;
    without one the overlays are left out)."""
    names = dataset_names(run_dir)
    if not names:
        raise FileNotFoundError(f"{storage.redact(run_dir)}: no prior/, pseudo_gt/ or reports/per_sample/ "
                                "outputs found")
    if body is None and worst > 0:
        try:
            body = overlay.run_body_model(run_dir)
        except FileNotFoundError as err:
            log.warning("dashboard: %s; worst samples are listed without overlays", err)
    summary_path = RunLayout(run_dir).summary()
    summary = storage.read_json(summary_path) if storage.exists(summary_path) else {}
    run_name = storage.redact(run_dir).rstrip("/").rsplit("/", 1)[-1]
    sections = [dataset_html(build_report(run_dir, n, worst, body), summary.get("datasets", {}).get(n)) for n in names]
    steps = read_steps(run_dir)
    step_rows = "".join(f"<tr>{_cell(s['step'])}{_cell(_float(s['seconds']), 1)}{_cell(s['completed_at'])}</tr>"
                        for s in steps)
    head = [f"<h1>Quality dashboard: {html.escape(run_name)}</h1>",
            f'<p class="note">run directory {html.escape(storage.redact(run_dir))}; datasets: '
            + ", ".join(f'<a href="#ds-{html.escape(n)}">{html.escape(n)}</a>' for n in names) + "</p>"]
    if summary.get("headline"):
        head.append(f'<p class="headline">{html.escape(summary["headline"])}</p>')
    if not summary:
        head.append('<p class="note">no reports/summary.json in this run (report step not run): '
                    "2D errors are read from the outputs, 3D errors are unavailable.</p>")
    if steps:
        head.append('<details><summary>pipeline steps</summary><table class="steps"><thead><tr><th>step</th>'
                    "<th>time (s)</th><th>completed (UTC)</th></tr></thead>"
                    f"<tbody>{step_rows}</tbody></table></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>annotator dashboard: {html.escape(run_name)}</title><style>{STYLE}</style></head><body>"
            + "".join(head) + run_overview_html(summary) + "".join(sections) + f"<script>{SCRIPT}</script></body></html>\n")


def write_dashboard(run_dir: str, out: str | None = None, worst: int = 6, body=None) -> str:
    """Write the dashboard (default ``<run_dir>/reports/dashboard.html``); returns the path."""
    out = out or RunLayout(run_dir).dashboard()
    storage.write_bytes_atomic(out, build_dashboard(run_dir, worst, body).encode("utf-8"))
    return out


__all__ = ["Metric", "METRICS", "DatasetReport", "dataset_names", "read_outputs", "per_sample_table",
           "comparison_table", "per_joint_errors", "per_joint_table", "per_joint_3d_html", "run_overview_html",
           "worst_samples", "read_steps",
           "histogram_svg", "bar_chart_svg", "build_report", "build_dashboard", "write_dashboard"]
