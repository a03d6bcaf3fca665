"""``python -m annotator.run JOB.yaml [--set key.path=value ...]`` - the product's main job.

Runs the configured steps in order on Ray (joins ``ray.address`` / ``$RAY_ADDRESS`` when
set - e.g. under ``ray job submit`` - otherwise starts a local Ray), skipping steps whose
state record matches (see :mod:`annotator.steps.base`), and ends with a summary table.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Callable

from annotator import storage
from annotator.config import STEPS, ConfigError, JobConfig, load_job
from annotator.steps.base import RunLayout, StepContext, fingerprint, read_state, setup_logging, write_state

log = logging.getLogger("annotator")


def _step_functions() -> dict[str, Callable[[StepContext], dict]]:
    from annotator.steps.estimator import run_evaluate, run_train_estimator
    from annotator.steps.infer import run_predict_prior, run_reinfer
    from annotator.steps.prepare import run_manifest, run_train_prior
    from annotator.steps.report import run_report
    from annotator.steps.train import run_finetune, run_pretrain

    return {"manifest": run_manifest, "train-prior": run_train_prior, "pretrain": run_pretrain,
            "predict-prior": run_predict_prior, "finetune": run_finetune, "reinfer": run_reinfer,
            "train-estimator": run_train_estimator, "evaluate": run_evaluate, "report": run_report}


def step_payloads(cfg: JobConfig) -> dict[str, object]:
    """The configuration each step's result depends on (its fingerprint input)."""
    d = cfg.model_dump(mode="json")
    return {
        "manifest": {"datasets": d["datasets"], "manifest": d["manifest"],
                     "body_model": {k: d["body_model"][k] for k in ("kind", "path", "num_betas")}},
        "train-prior": d["pose_prior"],
        "pretrain": {"network": d["network"], "crop": d["crop"], "train": d["pretrain"]},
        "predict-prior": {},
        "finetune": {"train": d["finetune"]},
        "reinfer": {"method": d["method"], "smplify": d["smplify"] if d["method"] == "smplify" else None},
        "train-estimator": {"train": d["estimator"]},
        "evaluate": {},
        "report": {"method": d["method"], "label": cfg.method_label},
    }


def plan_steps(cfg: JobConfig) -> list[str]:
    steps = [s for s in STEPS if s in cfg.steps]
    if cfg.method == "prior":
        steps = [s for s in steps if s not in ("finetune", "train-prior")]
    if cfg.method == "smplify":  # fitting replaces the finetune; the VPoser prior is still trained
        steps = [s for s in steps if s != "finetune"]
    if not cfg.datasets_with_role("eval3d"):  # the indirect error needs a held-out 3D set
        steps = [s for s in steps if s not in ("train-estimator", "evaluate")]
    return steps


def init_ray(cfg: JobConfig) -> None:
    import ray
    from ray.data import DataContext

    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        # Workers log warnings and errors only: the driver prints the job's own progress lines.
        # address "local": start a private local Ray rather than join whatever else runs here
        ray.init(address=address or "local", logging_level=logging.WARNING, log_to_driver=True,
                 logging_config=ray.LoggingConfig(encoding="TEXT", log_level="WARNING"),
                 runtime_env={"env_vars": _worker_env()} if not address else None)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its INFO/plan lines would drown the job's own
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    ctx.execution_options.verbose_progress = False


def _worker_env() -> dict[str, str]:
    keys = ("ANNOTATOR_CACHE_DIR", "ANNY_CACHE_DIR", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN")
    return {k: os.environ[k] for k in keys if k in os.environ}


def run_job(cfg: JobConfig, force: list[str] | None = None) -> dict:
    """Run (or resume) a job; returns ``{step: {"status", "seconds", "outputs"}}``."""
    storage.configure_s3(cfg.storage.endpoint_url, cfg.storage.region)
    layout = RunLayout(cfg.run_root)
    ctx = StepContext(cfg=cfg, layout=layout)
    funcs = _step_functions()
    payloads = step_payloads(cfg)
    prev = ""
    for step in STEPS:  # fingerprints chain over the canonical order
        prev = fingerprint(payloads[step], [prev])
        ctx.fingerprints[step] = prev
    summary: dict[str, dict] = {}
    steps = plan_steps(cfg)
    invalidated = False
    for step in steps:
        rec = read_state(layout, step)
        fp = ctx.fingerprints[step]
        if rec and rec["fingerprint"] == fp and not invalidated and step not in (force or []):
            ctx.results[step] = rec["outputs"]
            summary[step] = {"status": "skipped (done)", "seconds": 0.0, "outputs": rec["outputs"]}
            log.info("[%s] already complete (state %s) - skipped", step, fp)
            continue
        if invalidated or step in (force or []):
            ctx.restart.add(step)  # its partial outputs are stale: start from scratch
        invalidated = True  # everything after a re-run step is re-run too
        init_ray(cfg)  # only when some step has work to do: a finished job reruns in seconds
        log.info("[%s] starting", step)
        t0 = time.monotonic()
        outputs = funcs[step](ctx)
        seconds = time.monotonic() - t0
        ctx.results[step] = outputs
        write_state(layout, step, fp, outputs, seconds)
        summary[step] = {"status": "ran", "seconds": round(seconds, 2), "outputs": outputs}
    return summary


def format_summary(cfg: JobConfig, summary: dict) -> str:
    lines = [f"run {cfg.name}: {storage.redact(cfg.run_root)}", f"{'step':<14} {'status':<16} {'seconds':>8}  result"]
    for step, s in summary.items():
        lines.append(f"{step:<14} {s['status']:<16} {s['seconds']:>8.1f}  {_headline(step, s['outputs'])}")
    return "\n".join(lines)


def _headline(step: str, out: dict) -> str:
    if step == "manifest":
        return "; ".join(f"{n}: {d['rows']} rows, {d['rejects']} rejects" for n, d in out["datasets"].items())
    if step in ("predict-prior", "reinfer", "evaluate"):
        return "; ".join(f"{n}: {d['rows']} rows, {d['rejects']} rejects" for n, d in out["datasets"].items()) \
            + (f" ({out['instances_per_s']}/s)" if "instances_per_s" in out else "")
    if step in ("pretrain", "finetune", "train-estimator"):
        m = out.get("metrics", {})
        return f"epochs {out['epochs']}, loss {m.get('loss', float('nan')):.4g}"
    if step == "train-prior":
        return f"vposer {'trained' if out.get('trained') else 'loaded'}"
    if step == "report":
        return out.get("headline", "")
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annotator.run", description=__doc__.splitlines()[0])
    parser.add_argument("job", help="job YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a setting, e.g. --set finetune.epochs=2 --set storage.root=s3://b/p")
    parser.add_argument("--force", action="append", default=[], choices=list(STEPS),
                        help="re-run this step (and the ones after it) even if complete")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        cfg = load_job(args.job, args.set)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = run_job(cfg, force=args.force)
    print(format_summary(cfg, summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
