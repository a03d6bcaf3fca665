"""What every pipeline step shares: the run layout, state records, progress logging.

A step is a plain function ``run(ctx) -> dict`` (its outputs summary). The pipeline
(:mod:`annotator.run`) calls the steps in order; Ray is used *inside* a step as its
executor (Ray Data for inference, Ray Train for training), never by the math itself.

Resumability: after a step completes, a state record ``state/<step>.json`` is written
with the step's *fingerprint* - a hash of the configuration the step depends on and of
the fingerprints of the steps before it. A rerun skips a step whose record exists with
the same fingerprint; a changed setting reruns that step and everything after it.
Inside a step, work is committed per shard with deterministic file names, so a step
interrupted half-way redoes only the missing shards.

Before a step (re)runs, its record and those of every later step are replaced by *pending*
records (``status: pending``) - before anything is deleted or rewritten - so an interrupted
run is never reported done. A step that must start from scratch (forced, or an upstream
step re-ran) gets a new ``output_token`` in its pending record; its output folders are
marked with fingerprint + token, so the next run resumes the work done since that restart
and never keeps outputs from before it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from annotator import storage
from annotator.config import JobConfig
from annotator.layout import RunLayout

log = logging.getLogger("annotator")

STATE_VERSION = 1


@dataclass
class StepContext:
    cfg: JobConfig
    layout: RunLayout
    fingerprints: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)
    restart: set[str] = field(default_factory=set)
    """Steps that must start from scratch (forced, or an earlier step re-ran in this invocation)."""
    tokens: dict[str, str] = field(default_factory=dict)
    """Output token of each step since its last restart (see the module doc); none: the fingerprint alone."""

    def output_key(self, step: str) -> str:
        """What a step's output folders are marked with: its fingerprint (+ restart token)."""
        token = self.tokens.get(step)
        return f"{self.fingerprints[step]}-{token}" if token else self.fingerprints[step]

    def datasets(self, role: str):
        """The job's datasets of ``role`` that the manifest step produced (optional ones may be absent)."""
        made = self.result("manifest")["datasets"]
        return [d for d in self.cfg.datasets_with_role(role) if d.name in made]

    def fresh_output_dir(self, step: str, path: str, patterns: tuple[str, ...] = ("part-*",)) -> None:
        """Make ``path`` hold only outputs of this step's current fingerprint.

        Shards (or checkpoints) left by an interrupted run with the same fingerprint are
        kept, so the step resumes; ones written under another configuration, or before an
        upstream step was re-run, are deleted first, so stale rows can never survive."""
        marker = storage.join(path, "_fingerprint.json")
        fp = self.output_key(step)
        if step not in self.restart and storage.exists(marker) and storage.read_json(marker).get("fingerprint") == fp:
            return
        fs, p = storage.filesystem(path)
        for pattern in patterns:
            for f in fs.glob(p.rstrip("/") + "/" + pattern):
                fs.rm(f, recursive=True)
        storage.write_json_atomic(marker, {"step": step, "fingerprint": fp})

    def result(self, step: str) -> dict:
        """Outputs summary of an earlier step (from this run or its state record)."""
        if step not in self.results:
            rec = read_state(self.layout, step)
            if rec is None:
                raise RuntimeError(f"step '{step}' has not completed in {storage.redact(self.layout.root)}")
            self.results[step] = rec["outputs"]
        return self.results[step]


def fingerprint(payload: Any, upstream: list[str]) -> str:
    blob = json.dumps({"payload": payload, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_state_record(layout: RunLayout, step: str) -> dict | None:
    """The raw state record of a step (done or pending), None if there is none."""
    path = layout.state(step)
    if not storage.exists(path):
        return None
    try:
        rec = storage.read_json(path)
    except ValueError:  # not JSON: treated as no record (the step reruns)
        return None
    if not isinstance(rec, dict) or rec.get("version") != STATE_VERSION:
        return None
    return rec


def read_state(layout: RunLayout, step: str) -> dict | None:
    """The completion record of a step; None if it has none or its record is pending."""
    rec = read_state_record(layout, step)
    if rec is None or rec.get("status", "done") != "done":
        return None
    return rec


def new_output_token() -> str:
    return uuid.uuid4().hex[:12]


def write_pending(layout: RunLayout, step: str, token: str | None) -> None:
    """Mark a step not done (before any of its outputs is touched); ``token``: its output token."""
    storage.write_json_atomic(
        layout.state(step),
        {"version": STATE_VERSION, "step": step, "status": "pending", "fingerprint": None,
         "output_token": token, "invalidated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )


def write_state(layout: RunLayout, step: str, fp: str, outputs: dict, seconds: float,
                token: str | None = None) -> None:
    storage.write_json_atomic(
        layout.state(step),
        {"version": STATE_VERSION, "step": step, "status": "done", "fingerprint": fp, "outputs": outputs,
         "output_token": token, "seconds": round(seconds, 3),
         "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )


class Progress:
    """Driver-log progress for one unit of work: done / total, rate, ETA (throttled)."""

    def __init__(self, label: str, total: int, unit: str = "instances", every_s: float = 5.0, already_done: int = 0):
        self.label, self.total, self.unit, self.every_s = label, max(int(total), 0), unit, every_s
        self.done = self.initial = int(already_done)  # work finished by an earlier run: not in the rate
        self.t0 = time.monotonic()
        self._last = 0.0

    def update(self, n: int, force: bool = False) -> None:
        self.done += int(n)
        now = time.monotonic()
        if force or now - self._last >= self.every_s or self.done >= self.total:
            self._last = now
            log.info("%s", self.line())

    def line(self) -> str:
        el = max(time.monotonic() - self.t0, 1e-9)
        rate = (self.done - self.initial) / el
        left = (self.total - self.done) / rate if rate > 0 and self.total else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = f"{left:6.0f}s" if left == left else "     ?"
        return f"[{self.label}] {self.done}/{self.total} {self.unit} ({pct:5.1f}%) {rate:7.1f}/s ETA {eta}"

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0


def setup_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger("annotator")
    if not root.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(h)
    root.setLevel(level)
    root.propagate = False
