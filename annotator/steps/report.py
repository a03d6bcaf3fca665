"""Step ``report``: error reports of the run (see :mod:`annotator.evaluation.reports`)."""
from __future__ import annotations

import logging

from annotator.config import STEPS
from annotator.steps.base import StepContext, read_state

log = logging.getLogger("annotator")


def run_report(ctx: StepContext) -> dict:
    from annotator.body import load_body_model
    from annotator.evaluation.dashboard import write_dashboard
    from annotator.evaluation.reports import build_reports

    manifest = ctx.result("manifest")
    body = load_body_model(ctx.cfg.body_model.model_copy(update={"path": manifest["body_model_path"]}))
    seconds = {s: rec["seconds"] for s in STEPS if (rec := read_state(ctx.layout, s)) is not None}
    # evaluation/ holds this configuration's estimator only if the evaluate state matches it
    # (a job without those steps, or with another method, may find an older run's there)
    evaluated = read_state(ctx.layout, "evaluate")
    indirect = evaluated is not None and evaluated["fingerprint"] == ctx.fingerprints["evaluate"]
    summary = build_reports(ctx.layout, ctx.cfg, manifest, body, step_seconds=seconds, indirect=indirect)
    dashboard = write_dashboard(ctx.layout.root, body=body)
    log.info("[report] %s", summary["headline"])
    log.info("[report] dashboard: %s", dashboard)
    return {"summary": summary, "headline": summary["headline"], "dashboard": str(dashboard)}
