"""The HTML quality dashboard: numbers against the Parquet they come from, per-joint 2D
errors on constructed data, embedded overlays, offline-ness, and a headless Chromium
render that must log no console message (with a broken page proving the detector works).

The tiny run directory comes from test_overlay.write_run (real COCO images, open body model).
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from annotator.body.joints import COCO17_NAMES
from annotator.evaluation import cli as eval_cli
from annotator.evaluation import dashboard, plots
from test_overlay import ANNOTATION_OFFSET, DATASET, UNANNOTATED_JOINT, write_run

SVG_NS, XLINK_NS = "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]
# With --enable-logging=stderr Chromium logs every console message as "...:CONSOLE:..." and
# uncaught exceptions as "Uncaught ...".
CONSOLE_RE = re.compile(r":CONSOLE[:(]|Uncaught ")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, body_model, real_fixtures):
    from annotator.body.open_model import ensure_open_model
    from annotator.config import BodyModelConfig

    root = tmp_path_factory.mktemp("dash") / "job"
    info = write_run(root, body_model, real_fixtures, ensure_open_model(BodyModelConfig().cache_dir))
    return root, info


@pytest.fixture()
def run(base_run, tmp_path):
    """A private copy (tests add reports/ to it)."""
    root, info = base_run
    copy = tmp_path / "job"
    shutil.copytree(root, copy, symlinks=True)
    return copy, info


# Per-sample report values written into reports/per_sample/toy.parquet (3 samples x 2 outputs).
REPORT = pd.DataFrame({
    "sample_id": [f"{DATASET}/{i}" for i in range(3)] * 2,
    "output": ["prior"] * 3 + ["final"] * 3,
    "method": ["prior"] * 3 + ["cliff"] * 3,
    "err2d_px": [10.0, 20.0, 60.0, 5.0, 12.5, 30.0],
    "err2d_norm": [0.1, 0.2, 0.6, 0.05, 0.125, 0.3],
    "mpjpe": [100.0, 250.0, np.nan, 80.0, 300.0, 40.0],
    "pa_mpjpe": [50.0, 60.0, np.nan, 40.0, 45.0, 35.0],
    "pve": [120.0, 260.0, np.nan, 90.0, 310.0, 50.0],
    "err_x": [10.0, 20.0, np.nan, 8.0, 16.0, 4.0],
    "err_y": [11.0, 21.0, np.nan, 9.0, 17.0, 5.0],
    "err_z": [12.0, 22.0, np.nan, 10.0, 18.0, 6.0],
})
# per-joint 3D errors: joint j of a sample is (j + 1) x its MPJPE / 9 (mean over 17 joints = MPJPE)
REPORT["joint_err3d_mm"] = [None if np.isnan(m) else (np.arange(1, 18) * m / 9.0).astype(np.float32)
                            for m in REPORT["mpjpe"]]
SUMMARY = {"headline": "toy: 2D err prior 30.0px -> final 15.8px",
           "annotation_time": {"method": "cliff-no-bbox", "steps": {"pretrain": 100.0, "reinfer": 20.5},
                               "seconds": 120.5, "instances": 241, "instances_per_s": 2.0},
           "indirect": {"w3d": {"pseudo_gt_method": "cliff-no-bbox", "instances": 7,
                                "estimator": {"mpjpe": 123.4, "pa_mpjpe": 67.8, "pve": 140.0, "err2d_px": 9.5}}}}


def _write_reports(root: Path) -> None:
    (root / "reports" / "per_sample").mkdir(parents=True)
    REPORT.to_parquet(root / "reports" / "per_sample" / f"{DATASET}.parquet", index=False)
    (root / "reports" / "summary.json").write_text(json.dumps(SUMMARY))
    (root / "state").mkdir()
    (root / "state" / "infer.json").write_text(json.dumps({"step": "infer", "seconds": 12.5,
                                                           "completed_at": "2026-11-22T02:00:00Z"}))


class _Tables(HTMLParser):
    """Collects ``{table class: [[(data-v, text), ...] per body row]}`` and img srcs."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str]]]] = {}
        self.images: list[str] = []
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("class", "").split()[0], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = [a.get("data-v"), ""]
        elif tag == "img":
            self.images.append(a["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(tuple(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def _parse(html: str) -> _Tables:
    p = _Tables()
    p.feed(html)
    return p


def test_per_joint_errors_on_constructed_data():
    pred = np.zeros((3, 4, 2))
    ann = np.zeros((3, 4, 3))
    ann[..., 0] = [[3.0, 1.0, 0.0, 2.0]] * 3  # joint j is off by this many px along x
    ann[..., 1] = [[4.0, 0.0, 0.0, 0.0]] * 3  # joint 0: (3, 4) -> 5 px
    ann[..., 2] = [[1, 1, 0, 1], [1, 0, 0, 1], [2, 1, 0, 0]]  # confidence; joint 2 never annotated
    pred[2, 0] = [3.0, 4.0]  # sample 2 predicts joint 0 exactly
    pred[1, 3] = np.nan  # a failed prediction is skipped
    mean, count = dashboard.per_joint_errors(pred, ann)
    assert count.tolist() == [3, 2, 0, 1]
    np.testing.assert_allclose(mean[[0, 1, 3]], [10.0 / 3, 1.0, 2.0])
    assert np.isnan(mean[2])


def test_per_joint_table_against_manifest(run):
    root, info = run
    outputs = dashboard.read_outputs(str(root), DATASET)
    from annotator.evaluation.overlay import read_annotations

    table = dashboard.per_joint_table(outputs, read_annotations(str(root), DATASET))
    assert list(table.index) == list(COCO17_NAMES)
    expected = ANNOTATION_OFFSET.copy()
    expected[UNANNOTATED_JOINT] = np.nan
    np.testing.assert_allclose(table["final"].to_numpy(), expected, rtol=1e-4)  # annotation = final + offset
    assert table["final_n"].tolist() == [0 if j == UNANNOTATED_JOINT else 3 for j in range(17)]
    assert (table["prior"].drop(COCO17_NAMES[UNANNOTATED_JOINT]) > 0).all()


def test_comparison_table_equals_parquet_means(run):
    root, _ = run
    _write_reports(root)
    html = dashboard.build_dashboard(str(root), worst=0)
    parsed = _parse(html)
    rows = {r[0][0]: r for r in parsed.tables["comparison"]}
    assert list(rows) == ["prior", "final"]
    header = re.search(r'<table class="comparison.*?<thead><tr>(.*?)</tr>', html).group(1)
    names = re.findall(r"<th>(.*?)</th>", header)
    assert names[:4] == ["output", "method", "samples", "2D error (px)"] and "MPJPE (mm)" in names
    for output, row in rows.items():
        ref = REPORT[REPORT["output"] == output]
        assert row[1][1] == ref["method"].iloc[0] and int(row[2][0]) == 3
        for col in ["err2d_px", "err2d_norm", "mpjpe", "pa_mpjpe", "pve", "err_x", "err_y", "err_z"]:
            m = dashboard.METRIC_BY_COLUMN[col]
            cell = row[names.index(f"{m.label} ({m.unit})" if m.unit else m.label)]
            assert float(cell[0]) == pytest.approx(ref[col].mean(skipna=True), rel=1e-12), (output, col)
            assert cell[1] == f"{ref[col].mean(skipna=True):,.{m.digits}f}"
    # prior MPJPE is the mean of the two finite values (NaN skipped, as in summary.json)
    assert float(rows["prior"][names.index("MPJPE (mm)")][0]) == pytest.approx(175.0)
    assert "toy: 2D err prior 30.0px -&gt; final 15.8px" in html
    steps = parsed.tables["steps"]
    assert steps == [[("infer", "infer"), ("12.5", "12.5"), ("2026-11-22T02:00:00Z", "2026-11-22T02:00:00Z")]]
    # histograms: one bar per bin and output, counts summing to the samples of each output
    assert html.count('<svg class="chart histogram"') == 2  # 2D error and MPJPE
    counts = re.findall(r"<title>(prior|final): [^<]*: (\d+) samples</title>", html)
    assert sum(int(n) for o, n in counts if o == "final") == 3 + 3  # err2d + MPJPE
    assert sum(int(n) for o, n in counts if o == "prior") == 3 + 2  # prior MPJPE has one NaN
    # per-joint 3D bars: the mean over samples of each output's joint errors
    bars = dict(re.findall(r"<title>(final right_ankle|prior right_ankle): ([\d.]+) mm</title>", html))
    assert float(bars["final right_ankle"]) == pytest.approx(17 / 9 * REPORT["mpjpe"][3:].mean(), abs=0.05)
    assert float(bars["prior right_ankle"]) == pytest.approx(17 / 9 * 175.0, abs=0.05)
    # annotation time and indirect error come from summary.json
    assert parsed.tables["annotation-time"] == [[("pretrain", "pretrain"), ("100.0", "100.0")],
                                                [("reinfer", "reinfer"), ("20.5", "20.5")]]
    assert "241 target instances in 120.5 s" in html and "Annotation time (cliff-no-bbox)" in html
    ind = parsed.tables["indirect"][0]
    assert [c[1] for c in ind] == ["w3d", "cliff-no-bbox", "7", "123.4", "67.8", "140.0", "9.5"]


def test_worst_samples_with_overlays_without_reports(run, body_model):
    root, _ = run
    html = dashboard.build_dashboard(str(root), worst=2, body=body_model)
    parsed = _parse(html)
    assert "no reports/summary.json" in html
    # no report step: the table comes from the outputs' own err2d columns
    rows = {r[0][0]: r for r in parsed.tables["comparison"]}
    assert float(rows["final"][3][0]) == pytest.approx(11.0) and float(rows["prior"][3][0]) == pytest.approx(22.0)
    worst = parsed.tables["worst"]
    assert [r[1][0] for r in worst] == [f"{DATASET}/2", f"{DATASET}/1"]  # largest final err2d first
    assert [float(r[2][0]) for r in worst] == [20.0, 9.0] and [float(r[3][0]) for r in worst] == [40.0, 18.0]
    assert len(parsed.images) == 4  # prior + final per worst sample
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.format == "PNG" and max(img.size) >= dashboard.WORST_TILE


def test_dashboard_is_self_contained(run):
    root, _ = run
    _write_reports(root)
    html = dashboard.build_dashboard(str(root), worst=0)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and not re.search(r"url\((?!#)", html)  # only the charts' own clip paths
    # the only URLs are the SVG and XLink namespace names of the inline charts (never fetched)
    urls = re.findall(r"https?://[^\s\"'<>]+", html)
    assert set(urls) == {SVG_NS, XLINK_NS} and urls.count(SVG_NS) == html.count("<svg ") == 4
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html and "<metadata" not in html
    assert "<text" not in html  # chart glyphs are paths: no font is needed
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # the charts' definitions do not clash
    assert set(re.findall(r'(?:href="#|url\(#)([^")]+)', html)) <= set(ids)


def test_report_cli_default_path_and_errors(run, tmp_path, capsys):
    root, _ = run
    parser = argparse.ArgumentParser(prog="annotator")
    eval_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(root), "--worst", "0"])
    assert args.func(args) == 0
    out = root / "reports" / "dashboard.html"
    assert out.exists() and str(out) in capsys.readouterr().out
    assert '<table class="comparison' in out.read_text()
    with pytest.raises(FileNotFoundError, match="no prior/, pseudo_gt/ or reports/per_sample/ outputs"):
        dashboard.build_dashboard(str(tmp_path / "empty"), worst=0)
    args = parser.parse_args(["report", str(tmp_path / "empty")])
    assert args.func(args) == 2
    assert "annotator report: error:" in capsys.readouterr().err


def _titles(svg: str) -> list[str]:
    return re.findall(r"<title>(.*?)</title>", svg)


def _hex(patch) -> str:
    from matplotlib.colors import to_hex

    return to_hex(patch.get_facecolor())


def test_histogram_figure_bars_counts_and_nan():
    values = {"prior": np.array([10.0, 20.0, 60.0, np.nan]), "final": np.array([5.0, 12.5, 30.0])}
    chart = plots.histogram(values, "2D error (px)", dashboard.OUTPUT_COLOURS, bins=4, clip_percentile=100.0)
    bars = chart.ax.patches
    assert len(bars) == 4 * 2  # one bar per bin and output
    by_output = {o: [b for b in bars if _hex(b) == c] for o, c in dashboard.OUTPUT_COLOURS.items()}
    assert [b.get_height() for b in by_output["prior"]] == [1, 1, 0, 1]  # bins of 15 px; the NaN is skipped
    assert [b.get_height() for b in by_output["final"]] == [2, 0, 1, 0]
    assert [b.get_x() for b in by_output["prior"]] == pytest.approx([0, 15, 30, 45])
    assert [t.get_text() for t in chart.figure.legends[0].get_texts()] == ["prior", "final"]
    assert chart.ax.get_xlabel() == "2D error (px)" and chart.ax.get_ylabel() == "samples"
    assert chart.ax.get_title(loc="left") == ""  # nothing cut off
    svg = chart.svg("chart histogram")
    assert svg.startswith('<svg class="chart histogram" role="img" ') and svg.endswith("</svg>")
    assert _titles(svg) == [f"prior: {r}: {n} samples" for r, n in zip(["0\u201315", "15\u201330", "30\u201345", "45\u201360"],
                                                                     [1, 1, 0, 1])] + \
        [f"final: {r}: {n} samples" for r, n in zip(["0\u201315", "15\u201330", "30\u201345", "45\u201360"], [2, 0, 1, 0])]
    assert plots.histogram({"prior": np.array([np.nan])}, "x") is None
    assert dashboard.histogram_svg({"prior": np.array([np.nan])}, "x") == '<p class="note">no values</p>'


def test_histogram_figure_overflow_bin():
    values = {"final": np.r_[np.arange(1.0, 1000.0), 1e6]}  # one outlier past the 99th percentile
    chart = plots.histogram(values, "MPJPE (mm)", dashboard.OUTPUT_COLOURS, bins=10)
    heights = [b.get_height() for b in chart.ax.patches]
    assert sum(heights) == 1000 and chart.ax.get_xlim()[1] < 1000  # the outlier is counted in the last bin
    assert chart.ax.get_title(loc="left").startswith("last bin: all values > ")
    tips = _titles(chart.svg())
    assert tips[-1].startswith("final: \u2265 ") and tips[-1].endswith(f": {int(heights[-1])} samples")


def test_grouped_bars_figure_values_and_nan():
    series = {"prior": np.array([1.0, np.nan, 3.0]), "final": np.array([2.0, 4.0, 6.5])}
    chart = plots.grouped_bars(["nose", "left_eye", "right_eye"], series, "mean 3D error (mm)", "mm",
                               dashboard.OUTPUT_COLOURS)
    bars = chart.ax.patches
    assert len(bars) == 5  # the NaN draws no bar
    assert [(_hex(b), b.get_height()) for b in bars] == [
        ("#7f93b8", 1.0), ("#7f93b8", 3.0), ("#e07b39", 2.0), ("#e07b39", 4.0), ("#e07b39", 6.5)]
    centres = [b.get_x() + b.get_width() / 2 for b in bars]
    assert centres == pytest.approx([-0.2, 1.8, 0.2, 1.2, 2.2])  # prior left of final in each group
    assert [t.get_text() for t in chart.ax.get_xticklabels()] == ["nose", "left_eye", "right_eye"]
    assert chart.ax.get_ylabel() == "mean 3D error (mm)"
    svg = chart.svg("chart bars")
    assert _titles(svg) == ["prior nose: 1.0 mm", "prior right_eye: 3.0 mm", "final nose: 2.0 mm",
                            "final left_eye: 4.0 mm", "final right_eye: 6.5 mm"]
    assert 'width="560" height="260" viewBox="0 0 560 260"' in svg  # px, room for the joint names
    assert plots.grouped_bars(["a"], {"prior": np.array([np.nan])}, "y") is None
    assert plots.grouped_bars(["a"], {}, "y") is None
    assert dashboard.bar_chart_svg(["a"], {"prior": np.array([0.0])}, "y") == '<p class="note">no annotated joints</p>'


def test_chart_svg_is_valid_inline_and_deterministic():
    import xml.etree.ElementTree as ET

    def make():
        return plots.grouped_bars(["a", "b"], {"prior": np.array([1.0, 2.0]), "final": np.array([3.0, np.nan])}, "y")

    svg = make().svg("chart bars")
    assert svg == make().svg("chart bars")  # same bytes on every call (fixed hash salt, no date)
    root = ET.fromstring(svg)  # well-formed XML once the prolog is gone
    assert root.tag == f"{{{SVG_NS}}}svg" and root.get("class") == "chart bars"
    assert not root.findall(f".//{{{SVG_NS}}}text") and not root.findall(f".//{{{SVG_NS}}}image")
    assert re.findall(r"https?://[^\s\"'<>]+", svg) == [XLINK_NS, SVG_NS]
    other = plots.histogram({"prior": np.array([1.0, 2.0])}, "x").svg()
    ids, other_ids = (set(re.findall(r'\bid="([^"]+)"', s)) for s in (svg, other))
    assert ids and other_ids and not ids & other_ids  # two charts on one page: no clashing ids
    assert set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg)) == ids  # every definition used, every use defined


def _chromium(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """Render ``page`` headless; returns (serialised DOM, console/uncaught log lines)."""
    proc = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if CONSOLE_RE.search(line)]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium)")
def test_dashboard_renders_in_headless_chromium(run, body_model, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefinedAnywhere();</script></body></html>")
    _, errors = _chromium(broken, tmp_path)
    assert any("notDefinedAnywhere" in e for e in errors), "the console-error detector must catch a broken page"

    root, _ = run
    _write_reports(root)
    out = Path(dashboard.write_dashboard(str(root), worst=1, body=body_model))
    dom, errors = _chromium(out, tmp_path)
    assert errors == []
    assert 'data-dashboard="ready"' in dom  # the inline script ran to its end
    assert '<table class="comparison sortable">' in dom and dom.count("<svg") == 4  # 2 histograms + 2D/3D joints
    assert dom.count('src="data:image/png;base64,') == 2


def test_dashboard_reads_and_writes_s3(run, s3_bucket):
    from annotator import storage

    root, _ = run
    _write_reports(root)
    url = f"{s3_bucket}/runs/job"
    for sub in ("pseudo_gt", "prior", "manifest", "reports", "state"):
        for f in sorted((root / sub).rglob("*")):
            if f.is_file():
                storage.write_bytes_atomic(f"{url}/{f.relative_to(root).as_posix()}", f.read_bytes())
    out = dashboard.write_dashboard(url, worst=0)
    assert out == f"{url}/reports/dashboard.html"
    html = storage.read_bytes(out).decode()
    assert html == dashboard.build_dashboard(str(root), worst=0).replace(str(root), url)  # same content, deterministic
