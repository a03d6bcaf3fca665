"""Figures of the reports and benchmarks, drawn with matplotlib (headless ``Agg`` backend).

* :func:`learning_curve` - the 3D error (PA-MPJPE) of a training step's network after every
  epoch, on a held-out slice of the aux3d world and on the target set (where the bench's
  synthetic truth exists), against optimiser steps, with the ``baseline-mean-pose``
  reference as a dashed line: underfitting, overfitting and the domain gap are seen, not
  argued.
* :func:`histogram` and :func:`grouped_bars` - the charts of the quality dashboard
  (:mod:`annotator.evaluation.dashboard`), one bar colour per output, each bar's value in
  its hover text; :meth:`Chart.svg` writes one as SVG to inline in an HTML page (glyphs as
  paths, no external reference, the same bytes on every call).
"""
from __future__ import annotations

import hashlib
import html
import io
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Curve sets drawn from each training step's record (``curve`` entries).
CURVE_SETS = {"aux3d_heldout": "held-out aux3d", "target": "target (wild)"}


def learning_curve(curves: dict[str, list[dict]], baselines: dict[str, float] | None = None,
                   metric: str = "pa_mpjpe", title: str = "") -> bytes:
    """PNG bytes: one line per (training step, set); ``curves`` maps a step label (e.g.
    ``cliff: pretrain``) to its per-epoch points (``steps`` and ``{set: {metric: ...}}``);
    ``baselines`` maps a set to the baseline value of ``metric`` (dashed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    offset = 0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, points) in enumerate(curves.items()):
        if not points:
            continue
        steps = [offset + int(p.get("steps", k + 1)) for k, p in enumerate(points)]
        for name, style in zip(CURVE_SETS, ("-", ":")):
            ys = [p.get(name, {}).get(metric) for p in points]
            if any(y is not None for y in ys):
                ax.plot(steps, ys, style, marker="o", ms=3, color=colours[i % len(colours)],
                        label=f"{label} - {CURVE_SETS[name]}")
        if label.endswith("pretrain"):  # later steps continue from the pretrained network
            offset = steps[-1]
    for (name, value), colour in zip((baselines or {}).items(), ("k", "grey")):
        if value is not None:
            ax.axhline(value, ls="--", color=colour, lw=1, label=f"baseline-mean-pose - {CURVE_SETS.get(name, name)}")
    ax.set_xlabel("optimiser steps (finetune continues from pretrain)")
    ax.set_ylabel(f"{metric.replace('_', '-').upper()} (mm)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------------------- dashboard charts

CHART_SIZE = (560, 220)
"""Width and height (px) of a dashboard chart; the inline SVG draws 1 pt as 1 px."""
LABEL_ROOM = 40
"""Extra height (px) of a bar chart for its category names, written at 45 degrees."""
DEFAULT_COLOUR = "#999999"
"""Bar colour of a series missing from ``colours``."""
CHART_RC = {"svg.fonttype": "path", "svg.hashsalt": "annotator", "font.size": 10, "legend.fontsize": 9,
            "axes.titlesize": 9, "axes.spines.top": False, "axes.spines.right": False}
"""matplotlib settings of the dashboard charts: glyphs drawn as paths (no font to fetch) and
a fixed salt for the SVG element ids (the same chart is the same SVG on every run)."""
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


@dataclass
class Chart:
    """A dashboard chart: its matplotlib figure (one ``Axes``) and the hover text of its
    artists, written as each one's SVG ``<title>``."""

    figure: Figure
    tooltips: list[tuple[object, str]] = field(default_factory=list)

    @property
    def ax(self):
        return self.figure.axes[0]

    def svg(self, css_class: str = "chart") -> str:
        """The chart as an ``<svg>`` element for an HTML page: no XML prolog, DOCTYPE or
        metadata, width and height in px, ``class`` set, a ``<title>`` (tooltip) in the
        group of every artist that has hover text, and the ids of its definitions (glyphs,
        markers, clip paths) prefixed by a digest of the chart, so that several charts share
        one page without clashing ids."""
        import matplotlib

        for i, (artist, _) in enumerate(self.tooltips):
            artist.set_gid(f"tip{i}")
        buf = io.StringIO()
        with matplotlib.rc_context(CHART_RC):
            self.figure.savefig(buf, format="svg", metadata=_NO_METADATA)
        text = _compact(buf.getvalue()[buf.getvalue().index("<svg"):])
        for i, (_, tip) in enumerate(self.tooltips):
            group = f'<g id="tip{i}">'
            text = text.replace(group, f"<g><title>{html.escape(tip, quote=False)}</title>", 1)
        text = re.sub(r'<g id="[^"]*">', "<g>", text)  # group ids: never referenced
        prefix = "c" + hashlib.sha256(text.encode()).hexdigest()[:8] + "-"
        text = re.sub(r'(\bid="|href="#|url\(#)', lambda m: m.group(1) + prefix, text)
        head, body = text.split(">", 1)
        head = re.sub(r'\b(width|height)="([\d.]+)pt"', r'\1="\2"', head)
        return f'<svg class="{html.escape(css_class)}" role="img"{head[len("<svg"):]}>{body}'


def _round_numbers(m: re.Match) -> str:
    return m.group(1) + re.sub(r"(\d)\.(\d\d)\d+", r"\1.\2", " ".join(m.group(2).split())) + '"'


def _compact(svg: str) -> str:
    """matplotlib's SVG without comments and indentation, coordinates (path data, x, y) cut
    to 0.01 px: the same picture, smaller."""
    svg = re.sub(r'(\b(?:d|x|y)=")([^"]*)"', _round_numbers, re.sub(r"<!--.*?-->", "", svg, flags=re.S))
    return re.sub(r">\s+<", "><", svg).strip()


def _chart(width: int, height: int):
    """A figure of ``width`` x ``height`` px (SVG points) with one Axes, laid out to fit its
    labels. A bare ``Figure`` (no pyplot): nothing to close, no global state. Call it under
    ``matplotlib.rc_context(CHART_RC)``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / 72, height / 72), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(axis="y", color="#eeeeee")
    ax.set_axisbelow(True)
    return fig, ax


def histogram(values: dict[str, np.ndarray], x_title: str, colours: dict[str, str] | None = None,
              bins: int = 20, clip_percentile: float = 99.0) -> Chart | None:
    """Histogram of each output's values over shared bins, bars side by side per bin (one
    bar per bin and output, hover text ``<output>: <bin range>: <n> samples``). Non-finite
    values are skipped; the range ends at ``clip_percentile`` of the pooled values and larger
    values are counted in the last bin (said in the chart title). None when no value is finite."""
    finite = {k: np.asarray(v, np.float64)[np.isfinite(np.asarray(v, np.float64))] for k, v in values.items()}
    finite = {k: v for k, v in finite.items() if v.size}
    if not finite:
        return None
    pooled = np.concatenate(list(finite.values()))
    hi = float(np.percentile(pooled, clip_percentile))
    hi = hi if hi > 0 else float(pooled.max()) or 1.0
    edges = np.linspace(0.0, hi, bins + 1)
    overflow = bool((pooled > hi).any())
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    bar_w = hi / bins / len(finite)
    with matplotlib.rc_context(CHART_RC):
        fig, ax = _chart(*CHART_SIZE)
        chart = Chart(fig)
        for j, (label, v) in enumerate(finite.items()):
            counts = np.histogram(np.clip(v, 0.0, hi), bins=edges)[0]
            bars = ax.bar(edges[:-1] + j * bar_w, counts, width=0.9 * bar_w, align="edge",
                          color=(colours or {}).get(label, DEFAULT_COLOUR), label=label)
            for i, (bar, n) in enumerate(zip(bars, counts)):
                rng = f"\u2265 {edges[i]:.3g}" if overflow and i == bins - 1 else f"{edges[i]:.3g}\u2013{edges[i + 1]:.3g}"
                chart.tooltips.append((bar, f"{label}: {rng}: {n} samples"))
        ax.set_xlim(0.0, hi)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(x_title)
        ax.set_ylabel("samples")
        if overflow:
            ax.set_title(f"last bin: all values > {edges[-2]:.3g} (range cut at the {clip_percentile:g}th percentile)",
                         loc="left", color="#888888")
        fig.legend(loc="outside upper right", ncols=len(finite), frameon=False)
    return chart


def grouped_bars(categories: Sequence[str], series: dict[str, np.ndarray], y_title: str, unit: str = "px",
                 colours: dict[str, str] | None = None) -> Chart | None:
    """Grouped vertical bars: one group per category, one bar per series (hover text
    ``<series> <category>: <value> <unit>``); a NaN value draws no bar. None when there is
    no series or no positive value."""
    arrays = {k: np.asarray(v, np.float64) for k, v in series.items()}
    vmax = max((float(np.nanmax(v)) for v in arrays.values() if np.isfinite(v).any()), default=0.0)
    if not arrays or vmax <= 0:
        return None
    import matplotlib

    x = np.arange(len(categories), dtype=np.float64)
    bar_w = 0.8 / len(arrays)
    with matplotlib.rc_context(CHART_RC):
        fig, ax = _chart(CHART_SIZE[0], CHART_SIZE[1] + LABEL_ROOM)
        chart = Chart(fig)
        for j, (label, v) in enumerate(arrays.items()):
            keep = np.flatnonzero(np.isfinite(v))
            bars = ax.bar(x[keep] - 0.4 + j * bar_w, v[keep], width=bar_w, align="edge",
                          color=(colours or {}).get(label, DEFAULT_COLOUR), label=label)
            for bar, i in zip(bars, keep):
                chart.tooltips.append((bar, f"{label} {categories[i]}: {v[i]:.1f} {unit}"))
        ax.set_xticks(x, list(categories), rotation=45, ha="right", rotation_mode="anchor")
        ax.set_xlim(-0.5, len(categories) - 0.5)
        ax.set_ylabel(y_title)
        fig.legend(loc="outside upper right", ncols=len(arrays), frameon=False)
    return chart


__all__ = ["learning_curve", "Chart", "histogram", "grouped_bars", "CHART_SIZE", "LABEL_ROOM"]
