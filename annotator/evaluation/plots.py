"""Figures of the reports and benchmarks, drawn with matplotlib (headless ``Agg`` backend).

* :func:`learning_curve` - the 3D error (PA-MPJPE) of a training step's network after every
  epoch, on a held-out slice of the aux3d world and on the target set (where the bench's
  synthetic truth exists), against optimiser steps, with the ``baseline-mean-pose``
  reference as a dashed line: underfitting, overfitting and the domain gap are seen, not
  argued.
"""
from __future__ import annotations

import io


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


__all__ = ["learning_curve"]
