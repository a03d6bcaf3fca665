"""``python -m annotator.run JOB.yaml [--set key.path=value ...]`` - the product's main job.

Runs the configured steps in order on Ray (joins ``ray.address`` / ``$RAY_ADDRESS`` when
set - e.g. under ``ray job submit`` - otherwise starts a local Ray), skipping steps whose
state record matches (see :mod:`annotator.steps.base`), and ends with a summary table.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable

from annotator import storage
from annotator import methods
from annotator.config import MAX_PIXELS_ENV, RENAMED_STEPS, STEPS, ConfigError, JobConfig, load_job
from annotator.layout import RunLayout
from annotator.steps.base import (StepContext, fingerprint, new_output_token, read_state, read_state_record,
                                  setup_logging, write_pending, write_state)

log = logging.getLogger("annotator")


def _step_functions() -> dict[str, Callable[[StepContext], dict]]:
    from annotator.steps.estimator import run_evaluate, run_train_estimator
    from annotator.steps.infer import run_predict_prior, run_reinfer
    from annotator.steps.annotate_aux import run_annotate_aux
    from annotator.steps.prepare import run_manifest, run_train_lifter, run_train_pose_prior
    from annotator.steps.report import run_report
    from annotator.steps.second_round import run_reinfer_second_round, run_train_second_round
    from annotator.steps.train import run_finetune, run_pretrain, run_train_spin

    return {"manifest": run_manifest, "train-pose-prior": run_train_pose_prior,
            "train-lifter": run_train_lifter, "annotate-aux": run_annotate_aux, "pretrain": run_pretrain,
            "predict-prior": run_predict_prior, "finetune": run_finetune, "train-spin": run_train_spin,
            "reinfer": run_reinfer,
            "train-second-round": run_train_second_round, "reinfer-second-round": run_reinfer_second_round,
            "train-estimator": run_train_estimator, "evaluate": run_evaluate, "report": run_report}


def step_payloads(cfg: JobConfig) -> dict[str, object]:
    """The configuration each step's result depends on (its fingerprint input)."""
    d = cfg.model_dump(mode="json")
    return {
        "manifest": {"datasets": d["datasets"], "manifest": d["manifest"],
                     "body_model": {k: d["body_model"][k] for k in ("kind", "path", "num_betas")}},
        "train-pose-prior": d["pose_prior"],
        "train-lifter": {"lifter": d["lifter"], "manifest": d["manifest"]},
        # None: not run, and not chained (fingerprints of jobs without it are what they were)
        "annotate-aux": ({**d["aux_annotator"], "network": d["network"], "crop": d["crop"], "train": d["aux_image"]}
                         if cfg.aux_annotator.kind == "image" else d["aux_annotator"])
        if cfg.aux_annotator.kind != "none" else None,
        "pretrain": {"network": d["network"], "crop": d["crop"], "train": d["pretrain"]},
        "predict-prior": {},
        "finetune": {"train": d["finetune"]},
        # None: not run, and not chained (as annotate-aux)
        "train-spin": {"train": d["spin"], "smplify": d["smplify"]} if cfg.method == "spin" else None,
        "reinfer": {"method": d["method"], "smplify": d["smplify"] if d["method"] == "smplify" else None,
                    **({"to": "first_round"} if cfg.second_round.enabled else {})},
        # None: not run, and not chained (as annotate-aux)
        "train-second-round": {"train": d["second_round"], "lifter": cfg.lifter.enabled}
        if cfg.second_round.enabled else None,
        "reinfer-second-round": {} if cfg.second_round.enabled else None,
        "train-estimator": {"train": d["estimator"]},
        "evaluate": {},
        "report": {"method": d["method"], "label": cfg.method_label},
    }


def plan_steps(cfg: JobConfig) -> list[str]:
    """The steps this job runs, in pipeline order (what its method runs: :mod:`annotator.methods`)."""
    return methods.plan_steps(cfg, STEPS)


def init_ray(cfg: JobConfig) -> None:
    import ray
    from ray.data import DataContext

    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        os.environ[MAX_PIXELS_ENV] = str(cfg.manifest.max_image_pixels)  # decode-time limit (local workers)
        # Workers log warnings and errors only: the driver prints the job's own progress lines.
        # address "local": start a private local Ray rather than join whatever else runs here
        ray.init(address=address or "local", logging_level=logging.WARNING, log_to_driver=True,
                 logging_config=ray.LoggingConfig(encoding="TEXT", log_level="WARNING"),
                 runtime_env={"env_vars": _worker_env(cfg)} if not address else None)
        if not address:
            # Anything in this process that looks a cluster up (Ray Train's state API, ...)
            # finds this job's own cluster, not "multiple active Ray instances" on the machine.
            os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        if cfg.storage.pass_credentials and storage.share_credentials_with_workers():
            log.info("AWS credentials passed to the workers through the job's object store")
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its INFO/plan lines would drown the job's own
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    ctx.execution_options.verbose_progress = False


#: Environment the driver gives the workers of a local Ray through ``runtime_env`` (which Ray
#: writes into its logs): never a secret. Credentials reach workers through their own AWS
#: chain, or with ``storage.pass_credentials`` through the job's object store.
WORKER_ENV_KEYS = ("ANNOTATOR_CACHE_DIR", "ANNY_CACHE_DIR", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION")


def _worker_env(cfg: JobConfig | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in WORKER_ENV_KEYS if k in os.environ}
    if cfg is not None:
        env[MAX_PIXELS_ENV] = str(cfg.manifest.max_image_pixels)
    return env


class RunInterrupted(Exception):
    """Ctrl-C (SIGINT) stopped the job; ``step`` is the step that was running."""

    def __init__(self, step: str | None, completed: list[str]):
        super().__init__(step)
        self.step, self.completed = step, completed


def _ctrl_c_stops_the_job() -> None:
    """Make Ctrl-C raise KeyboardInterrupt in the driver during every step.

    Ray Tune and Ray Train (v2) install SIGINT handlers of their own during ``fit()`` that turn
    Ctrl-C into a "graceful abort" whose result looks like a finished training, and leave them
    installed afterwards, so a later Ctrl-C is swallowed. Here the step stops, the state stays
    "pending" and the next run resumes from the last checkpoint."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        DataParallelTrainer._register_sigint_handler = lambda self, controller: None
    except (ImportError, AttributeError):  # another Ray version: the default handler below still applies
        pass
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _invalidate_from(ctx: StepContext, step: str, resume_own: bool) -> None:
    """Before ``step`` touches anything: its state record and those of every later step become
    pending records. Later steps get a new output token (their outputs, made from what this
    step is about to replace, are stale); ``step`` itself keeps its pending token when it is
    resumed (``resume_own``), else gets a new one."""
    for s in STEPS[STEPS.index(step):]:
        rec = read_state_record(ctx.layout, s)
        if s == step and resume_own:
            token = rec.get("output_token") if rec and rec.get("status") == "pending" else None
        else:
            token = new_output_token()
        write_pending(ctx.layout, s, token)
        ctx.tokens[s] = token


def run_job(cfg: JobConfig, force: list[str] | None = None) -> dict:
    """Run (or resume) a job; returns ``{step: {"status", "seconds", "outputs"}}``.

    Raises :class:`PreflightError` (before Ray starts) when inputs or storage are unusable and
    :class:`RunInterrupted` on Ctrl-C."""
    storage.configure_s3(cfg.storage.endpoint_url, cfg.storage.region)
    force = list(force or [])
    problems = check_storage(cfg)
    if problems:
        raise PreflightError(problems)
    layout = RunLayout(cfg.run_root)
    ctx = StepContext(cfg=cfg, layout=layout)
    funcs = _step_functions()
    payloads = step_payloads(cfg)
    prev = ""
    for step in STEPS:  # fingerprints chain over the canonical order
        prev = prev if payloads[step] is None else fingerprint(payloads[step], [prev])
        ctx.fingerprints[step] = prev
    summary: dict[str, dict] = {}
    steps = plan_steps(cfg)
    invalidated = False
    current = None
    old_address = os.environ.get("RAY_ADDRESS")
    try:
        for step in steps:
            rec = read_state(layout, step)
            fp = ctx.fingerprints[step]
            if rec and rec["fingerprint"] == fp and not invalidated and step not in force:
                ctx.results[step] = rec["outputs"]
                ctx.tokens[step] = rec.get("output_token")
                summary[step] = {"status": "skipped (done)", "seconds": 0.0, "outputs": rec["outputs"]}
                log.info("[%s] already complete (state %s) - skipped", step, fp)
                continue
            if not invalidated:  # the first step with work: check inputs, then mark it and all later steps not done
                problems = check_inputs(cfg, steps[steps.index(step):])
                if problems:
                    raise PreflightError(problems)
                _invalidate_from(ctx, step, resume_own=step not in force)
            if invalidated or step in force:
                ctx.restart.add(step)  # its partial outputs are stale: start from scratch
            invalidated = True  # everything after a re-run step is re-run too
            current = step
            init_ray(cfg)  # only when some step has work to do: a finished job reruns in seconds
            _ctrl_c_stops_the_job()
            log.info("[%s] starting", step)
            t0 = time.monotonic()
            outputs = funcs[step](ctx)
            seconds = time.monotonic() - t0
            ctx.results[step] = outputs
            write_state(layout, step, fp, outputs, seconds, token=ctx.tokens.get(step))
            summary[step] = {"status": "ran", "seconds": round(seconds, 2), "outputs": outputs}
            current = None
    except KeyboardInterrupt:
        raise RunInterrupted(current, [s for s in summary]) from None
    finally:
        if old_address is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = old_address
    return summary


class PreflightError(Exception):
    """Inputs or storage that cannot work, found before Ray starts: one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _endpoint(cfg: JobConfig) -> str:
    return cfg.storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "the AWS default endpoint"


def check_storage(cfg: JobConfig) -> list[str]:
    """Can the run root be used? Local: a folder (or creatable) we may write to. ``s3://``: the
    endpoint answers (one quick request, few retries). One line per problem, no secret in it."""
    root = cfg.storage.root
    if storage.is_remote(root):
        if not root.startswith(("s3://", "s3a://")):
            return []
        import fsspec

        try:
            fs = fsspec.filesystem("s3", skip_instance_cache=True,
                                   config_kwargs={"connect_timeout": 5, "read_timeout": 10,
                                                  "retries": {"max_attempts": 1, "mode": "standard"}},
                                   **storage.s3_options())
            fs.ls(cfg.run_root.split("://", 1)[1])
        except FileNotFoundError:
            return []  # a new run (or bucket not listable yet): writes will say more
        except Exception as err:  # noqa: BLE001 - any failure here is one line for the user
            text = storage.redact(str(err).strip().splitlines()[0] if str(err).strip() else "")
            return [f"storage.root {storage.redact(root)}: cannot reach the S3 endpoint {storage.redact(_endpoint(cfg))}: "
                    f"{type(err).__name__}: {text}"]
        return []
    path = storage.local_path(cfg.run_root)
    probe = path
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return [f"storage.root {root}: {probe} is not a folder"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"storage.root {root}: {probe} is not writable"]
    return []


def check_inputs(cfg: JobConfig, steps: list[str]) -> list[str]:
    """Every input the ``steps`` about to run read, checked in the driver before Ray starts:
    dataset files and image folders, the body model file, the VPoser checkpoint, and
    ``network.weights`` (it must load with ``weights_only=True``)."""
    problems: list[str] = []

    def check(label: str, path: str | None, folder: bool = False) -> bool:
        if not path:
            return True
        try:
            fs, p = storage.filesystem(path)
            ok = fs.isdir(p) if folder else fs.exists(p)
        except Exception as err:  # noqa: BLE001
            problems.append(f"{label} {storage.redact(path)}: cannot be checked: {type(err).__name__}: "
                            f"{storage.redact(str(err))[:200]}")
            return False
        if not ok:
            problems.append(f"{label} {storage.redact(path)}: " + ("not a folder" if folder and fs.exists(p)
                                                                   else "does not exist"))
        return ok

    if "manifest" in steps:
        for d in cfg.datasets:
            if d.format == "synth":
                continue
            if d.optional and d.path and not storage.exists(d.path):
                continue  # skipped with a warning by the manifest step
            check(f"datasets[{d.name}].path", d.path)
            check(f"datasets[{d.name}].images", d.images, folder=True)
        if cfg.body_model.path:
            check("body_model.path", cfg.body_model.path)
    if "train-pose-prior" in steps and cfg.pose_prior.checkpoint:
        check("pose_prior.checkpoint", cfg.pose_prior.checkpoint)
    if "train-lifter" in steps and cfg.lifter.checkpoint:
        check("lifter.checkpoint", cfg.lifter.checkpoint)
    if cfg.network.weights and {"pretrain", "train-second-round", "train-estimator"} & set(steps):
        if check("network.weights", cfg.network.weights):
            from annotator.steps.runtime import UnsafeCheckpointError, load_torch

            try:
                load_torch(cfg.network.weights, warn=False)
            except UnsafeCheckpointError as err:
                problems.append(f"network.weights {err}")
            except Exception as err:  # noqa: BLE001
                problems.append(f"network.weights {storage.redact(cfg.network.weights)}: not a torch file: "
                                f"{type(err).__name__}: {storage.redact(str(err))[:200]}")
    return problems


def format_summary(cfg: JobConfig, summary: dict) -> str:
    width = max([len("step"), *(len(s) for s in summary)])  # the step column: the longest step name shown
    lines = [f"run {cfg.name}: {storage.redact(cfg.run_root)}", f"{'step':<{width}} {'status':<16} {'seconds':>8}  result"]
    for step, s in summary.items():
        lines.append(f"{step:<{width}} {s['status']:<16} {s['seconds']:>8.1f}  {_headline(step, s['outputs'])}")
    return "\n".join(lines)


def _headline(step: str, out: dict) -> str:
    if step == "manifest":
        return "; ".join(f"{n}: {d['rows']} rows, {d['rejects']} rejects" for n, d in out["datasets"].items())
    if step in ("predict-prior", "reinfer", "reinfer-second-round", "evaluate"):
        return "; ".join(f"{n}: {d['rows']} rows, {d['rejects']} rejects" for n, d in out["datasets"].items()) \
            + (f" ({out['instances_per_s']}/s)" if "instances_per_s" in out else "")
    if step in ("pretrain", "finetune", "train-spin", "train-second-round", "train-estimator"):
        m = out.get("metrics", {})
        fits = out.get("fits", {}).get("datasets")
        return f"epochs {out['epochs']}, loss {m.get('loss', float('nan')):.4g}" + (
            "; fits " + "; ".join(f"{n}: {d['rows']} rows" for n, d in fits.items()) if fits else "")
    if step == "train-pose-prior":
        return f"vposer {'trained' if out.get('trained') else 'loaded'}"
    if step == "annotate-aux":
        return ", ".join(f"{n}: {r['rows']} rows" for n, r in out.get("datasets", {}).items())
    if step == "train-lifter":
        return f"lifter {'trained on ' + str(out.get('poses')) + ' poses' if out.get('trained') else 'loaded'}"
    if step == "report":
        return out.get("headline", "")
    return ""


def _step_name(name: str) -> str:
    """``--force``'s argument: a step name (an old one is refused, naming the new)."""
    if name in RENAMED_STEPS:
        raise argparse.ArgumentTypeError(f"step {name!r} is now called {RENAMED_STEPS[name]!r}")
    if name not in STEPS:
        raise argparse.ArgumentTypeError(f"unknown step {name!r} (steps: {', '.join(STEPS)})")
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annotator.run", description=__doc__.splitlines()[0])
    parser.add_argument("job", help="job YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a setting, e.g. --set finetune.epochs=2 --set storage.root=s3://b/p")
    parser.add_argument("--force", action="append", default=[], type=_step_name, metavar="STEP",
                        help="re-run this step (and the ones after it) even if complete")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        cfg = load_job(args.job, args.set)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        summary = run_job(cfg, force=args.force)
    except PreflightError as err:
        for line in err.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except RunInterrupted as err:
        where = f"during step '{err.step}'" if err.step else "between steps"
        done = f" ({', '.join(err.completed)} complete)" if err.completed else ""
        print(f"interrupted: the run stopped {where}{done}; its state is 'pending', not done. "
              f"Run the same command again to resume.", file=sys.stderr, flush=True)
        return 130
    print(format_summary(cfg, summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
