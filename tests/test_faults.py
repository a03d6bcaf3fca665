"""Fault tolerance: a Ray worker or actor process SIGKILLed in the middle of a step.

Real fault injection from outside the product: the job runs (``run_job``) in a background
thread of this test process, on a local Ray cluster the test starts; the test watches the
run directory and Ray's actor table and kills the worker/actor *process* (``SIGKILL``) at
the moment it wants. Each kill is checked to have landed while the step still had work.

* ``finetune``: the Ray Train worker is killed as soon as the first epoch checkpoint is on
  storage (possibly before Ray Train registered it); the step must resume from that
  checkpoint (``start_epoch > 0``), not from epoch 0, and finish all epochs.
* ``reinfer``: the Predictor actor is killed once the first output shard is committed and
  others are still pending; the step must complete with exactly one pseudo-GT row per
  manifest row and no duplicates.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pipeline import TINY_JOB, write_job  # noqa: E402  (the tiny job of the pipeline tests)

pytestmark = pytest.mark.slow

# Logical CPUs of the test's local Ray: a training worker (1) or an inference actor (1), the
# decode tasks (1 each) and Ray Train's / Ray Data's coordinator actors must fit at once.
RAY_CPUS = 4
# Steps every test shares: run once by the module fixture, skipped (same fingerprint) after.
PREFIX_STEPS = ["manifest", "train-pose-prior", "pretrain", "predict-prior"]
# aux3d ("lab") images: one pretrain batch (the attacked steps use the "wild" target data only;
# finetune runs without aux3d mixing) - a third of the tiny job's, to keep the set-up short.
LAB_IMAGES = 8
# Upper bounds for the waits below: generous for a loaded 2-core machine, finite so a
# broken product fails the test instead of hanging it.
WAIT_FOR_MOMENT_S = 240.0
WAIT_FOR_JOB_S = 300.0
POLL_FILES_S = 0.05  # run-directory polls are cheap: the kill follows the awaited moment closely
POLL_RAY_S = 0.5  # state-API polls go through the dashboard: kept rare on a loaded machine


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def ray_address():
    """A private local Ray with the dashboard (the state API needs it); yields its GCS address."""
    import ray

    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=True, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, ray_address):
    """The tiny job's run directory with ``manifest`` .. ``predict-prior`` complete: (job file, run dir)."""
    from annotator.config import load_job
    from annotator.run import run_job

    tmp = tmp_path_factory.mktemp("faults")
    datasets = json.loads(json.dumps(TINY_JOB["datasets"]))
    datasets[0]["synth"]["num_images"] = LAB_IMAGES
    job = write_job(tmp, str(tmp / "runs"), datasets=datasets)
    run_job(load_job(job, [f"steps=[{', '.join(PREFIX_STEPS)}]"]))
    return job, tmp / "runs" / "tiny"


def alive_actors(address: str, class_match: Callable[[str], bool]) -> list:
    """ALIVE actors of this cluster whose class name matches (``ray.util.state``)."""
    from ray.util.state import list_actors

    actors = list_actors(address=address, filters=[("state", "=", "ALIVE")], limit=10_000,
                         raise_on_missing_output=False)
    return [a for a in actors if class_match(a.class_name)]


def actors_named(address: str, class_match: Callable[[str], bool]) -> list:
    """All actors (any state, with details such as ``num_restarts``) whose class name matches."""
    from ray.util.state import list_actors

    return [a for a in list_actors(address=address, limit=10_000, detail=True, raise_on_missing_output=False)
            if class_match(a.class_name)]


def wait_for(what: str, probe: Callable[[], object], job: Future, poll_s: float = POLL_FILES_S,
             timeout_s: float = WAIT_FOR_MOMENT_S):
    """Poll ``probe`` until it returns something truthy; fail if the job ends or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if job.done():
            job.result()  # re-raises the job's own error, if any
            pytest.fail(f"the job finished before {what}: the fault was never injected")
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")


def start_job(job: Path, overrides: list[str], force: list[str] | None = None) -> tuple[ThreadPoolExecutor, Future]:
    from annotator.config import load_job
    from annotator.run import run_job

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job")
    return pool, pool.submit(run_job, load_job(job, overrides), force)


def read_rows(path: Path):
    files = sorted(path.glob("part-*.parquet"))
    return pq.read_table(files).to_pandas() if files else None


def assert_one_row_per_manifest_row(run: Path, dataset: str = "wild") -> None:
    manifest = read_rows(run / "manifest" / dataset)
    pgt = read_rows(run / "pseudo_gt" / dataset)
    assert pgt is not None, "no pseudo-GT written"
    assert pgt.sample_id.is_unique, pgt.sample_id[pgt.sample_id.duplicated()].tolist()
    assert sorted(pgt.sample_id) == sorted(manifest.sample_id)
    # one output shard per manifest shard, same names
    assert sorted(p.name for p in (run / "pseudo_gt" / dataset).glob("part-*.parquet")) == \
        sorted(p.name for p in (run / "manifest" / dataset).glob("part-*.parquet"))


# --------------------------------------------------------------------------- finetune
def stored_checkpoint_epoch(ckpt_dir: Path) -> int | None:
    """Epoch of the newest complete ``state.pt`` on storage (the product's own reader, which
    skips half-written files), or None. The kill follows its appearance at once, so it may land
    before Ray Train has registered that checkpoint: the worker must resume from it anyway."""
    from annotator.steps.train import latest_checkpoint

    if not ckpt_dir.exists():
        return None
    path = latest_checkpoint(str(ckpt_dir))
    if path is None:
        return None
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])


def kill_worker_after_first_checkpoint(job: Path, run: Path, step: str, overrides: list[str], epochs: int,
                                       ray_address: str) -> tuple[dict, int]:
    """Run the job; SIGKILL the (one) Ray Train worker of ``step`` as soon as its first epoch
    checkpoint is on storage; return the finished job's summary and the checkpoint epoch the kill
    followed. Checks that the kill landed before the last epoch and that the killed worker stayed
    dead (Ray Train replaced the worker group: the FailureConfig retry)."""
    pool, fut = start_job(job, overrides)
    try:
        # the worker is found first, so the kill follows the checkpoint by one poll interval
        workers = wait_for("a live training worker",
                           lambda: alive_actors(ray_address, lambda c: c == "RayTrainWorker"), fut, POLL_RAY_S)
        assert len(workers) == 1  # ray.num_workers = 1
        ckpt_dir = run / "checkpoints" / step
        wait_for(f"the first {step} checkpoint", lambda: stored_checkpoint_epoch(ckpt_dir) is not None, fut)
        os.kill(workers[0].pid, signal.SIGKILL)
        killed_at_epoch = stored_checkpoint_epoch(ckpt_dir)
        assert killed_at_epoch < epochs - 1, "the kill must land before the last epoch's checkpoint"
        summary = fut.result(timeout=WAIT_FOR_JOB_S)
    finally:
        pool.shutdown(wait=True)
    killed = {a.actor_id: a for a in actors_named(ray_address, lambda c: c == "RayTrainWorker")}[workers[0].actor_id]
    assert killed.state == "DEAD" and killed.pid == workers[0].pid
    return summary, killed_at_epoch


def test_training_worker_killed_after_a_checkpoint_resumes_from_it(prepared, ray_address):
    """Two epochs, no aux3d mixing (one input pipeline per epoch: the shortest finetune that
    still has an epoch left after the first checkpoint)."""
    job, run = prepared
    epochs = 2
    summary, killed_at_epoch = kill_worker_after_first_checkpoint(
        job, run, "finetune", [f"steps=[{', '.join(PREFIX_STEPS)}, finetune, reinfer]", f"finetune.epochs={epochs}",
                               "finetune.checkpoint_every_epochs=1", "finetune.aux3d_fraction=0"], epochs, ray_address)
    assert summary["finetune"]["status"] == "ran"
    m = summary["finetune"]["outputs"]["metrics"]  # the last report, from the attempt that finished
    # resumed from the stored checkpoint (or a later one), not from scratch, and ran to the end
    assert m["start_epoch"] >= killed_at_epoch + 1 > 0, (m, killed_at_epoch)
    assert m["epoch"] == epochs - 1
    assert m["samples"] == len(read_rows(run / "manifest" / "wild"))  # the last epoch saw every target row
    assert summary["reinfer"]["status"] == "ran"
    assert_one_row_per_manifest_row(run)


def test_one_of_two_training_workers_killed_resumes_with_two_workers(prepared, ray_address):
    """``ray.num_workers: 2`` (gloo on CPU): rank 1's process is killed once the first epoch
    checkpoint is stored; the retried worker group has two workers again, resumes from that
    checkpoint, keeps the ranks in sync and deals every target row to exactly one rank."""
    job, run = prepared
    epochs = 3
    pool, fut = start_job(job, [f"steps=[{', '.join(PREFIX_STEPS)}, finetune, reinfer]",
                                f"finetune.epochs={epochs}", "finetune.checkpoint_every_epochs=1",
                                "finetune.aux3d_fraction=0", "ray.num_workers=2", "ray.cpus_per_worker=1"],
                          force=["finetune", "reinfer"])
    try:
        workers = wait_for("two live training workers",
                           lambda: (w := alive_actors(ray_address, lambda c: c == "RayTrainWorker")) and len(w) == 2 and w,
                           fut, POLL_RAY_S)
        ckpt_dir = run / "checkpoints" / "finetune"
        wait_for("the first finetune checkpoint", lambda: stored_checkpoint_epoch(ckpt_dir) is not None, fut)
        victim = workers[1]
        os.kill(victim.pid, signal.SIGKILL)
        killed_at_epoch = stored_checkpoint_epoch(ckpt_dir)
        assert killed_at_epoch < epochs - 1, "the kill must land before the last epoch's checkpoint"
        summary = fut.result(timeout=WAIT_FOR_JOB_S)
    finally:
        pool.shutdown(wait=True)

    killed = {a.actor_id: a for a in actors_named(ray_address, lambda c: c == "RayTrainWorker")}[victim.actor_id]
    assert killed.state == "DEAD" and killed.pid == victim.pid
    out = summary["finetune"]["outputs"]
    assert out["metrics"]["start_epoch"] >= killed_at_epoch + 1 > 0, (out["metrics"], killed_at_epoch)
    assert out["metrics"]["epoch"] == epochs - 1
    rows = len(read_rows(run / "manifest" / "wild"))
    points = {p["epoch"]: p for p in out["curve"]}
    assert sorted(points) == list(range(epochs))  # the curve of the first attempt travelled in its checkpoint
    for epoch, point in points.items():  # two ranks in every epoch, before and after the kill
        assert point["ranks"]["rows"] == point["ranks"]["seen"] == point["ranks"]["unique"] == rows, point
        assert point["ranks"]["param_max_abs_diff"] == 0.0, point
    assert summary["reinfer"]["status"] == "ran"
    assert_one_row_per_manifest_row(run)


# --------------------------------------------------------------------------- reinfer
def committed_since(out_dir: Path, t: float) -> set[str]:
    """Output shards committed (atomically renamed into place) after wall time ``t``."""
    found = set()
    for p in out_dir.glob("part-*.parquet"):
        try:
            if p.stat().st_mtime > t:
                found.add(p.name)
        except FileNotFoundError:  # an old shard being cleared by the step
            pass
    return found


def test_inference_actor_killed_mid_step_loses_and_duplicates_nothing(prepared, ray_address):
    """``method: smplify`` makes every Predictor batch take a while (per-sample fitting), so
    shards are committed seconds apart and the kill lands with work left for the actor."""
    job, run = prepared
    out_dir = run / "pseudo_gt" / "wild"
    n_shards = len(list((run / "manifest" / "wild").glob("part-*.parquet")))
    assert n_shards >= 3
    overrides = [f"steps=[{', '.join(PREFIX_STEPS)}, reinfer]", "method=smplify",
                 "smplify.camera_iters=10", "smplify.body_iters=40", "ray.inference_batch_size=2"]
    t_start = time.time()  # shards of an earlier test in out_dir are older (and get deleted)
    pool, fut = start_job(job, overrides, force=["reinfer"])
    try:
        # Ray Data names the actor MapWorker(...MapBatches(Predictor)); found first, so the
        # kill follows the first commit by one poll interval
        actors = wait_for("a live Predictor actor",
                          lambda: alive_actors(ray_address, lambda c: "Predictor" in c), fut, POLL_RAY_S)
        assert len(actors) == 1  # ray.inference_actors = 1
        wait_for("the first committed reinfer shard", lambda: committed_since(out_dir, t_start), fut)
        os.kill(actors[0].pid, signal.SIGKILL)
        t_kill = time.time()
        committed_before = committed_since(out_dir, t_start)
        assert 1 <= len(committed_before) < n_shards, "the kill must land while shards are pending"
        summary = fut.result(timeout=WAIT_FOR_JOB_S)
    finally:
        pool.shutdown(wait=True)

    assert summary["reinfer"]["status"] == "ran"
    # Ray restarted the killed actor (same actor, new process) and it finished the pending shards
    after = {a.actor_id: a for a in actors_named(ray_address, lambda c: "Predictor" in c)}
    assert after[actors[0].actor_id].num_restarts >= 1
    late = committed_since(out_dir, t_kill)
    assert late and not late & committed_before, (late, committed_before)
    assert_one_row_per_manifest_row(run)
    res = summary["reinfer"]["outputs"]["datasets"]["wild"]
    assert res["rejects"] == 0 and res["rows"] == res["manifest_rows"]
    assert not list((run / "rejects" / "wild").glob("reinfer-*.parquet"))


# --------------------------------------------------------------------------- train-spin
def test_spin_worker_killed_mid_training_resumes_with_the_checkpointed_fits(prepared, ray_address):
    """``method: spin``: the Ray Train worker is killed once the first epoch checkpoint (network +
    fits dictionary) is on storage. The restarted worker must continue from that checkpoint's
    dictionary (its checksum), not from a fresh SMPLify or a half-updated one, so that every
    replacement the final dictionary counts is one of a completed epoch (nothing lost or doubled),
    and ``fits/`` holds one row per manifest row."""
    job, run = prepared
    epochs = 3
    summary, killed_at_epoch = kill_worker_after_first_checkpoint(
        job, run, "train-spin", [f"steps=[{', '.join(PREFIX_STEPS)}, train-spin, reinfer]", "method=spin",
                                 f"spin.epochs={epochs}", "spin.checkpoint_every_epochs=1", "spin.aux3d_fraction=0",
                                 "spin.batch_size=8", "spin.fit_iters=20"], epochs, ray_address)
    out = summary["train-spin"]["outputs"]
    m, curve = out["metrics"], out["curve"]
    assert m["start_epoch"] >= killed_at_epoch + 1 > 0, (m, killed_at_epoch)
    by_epoch = {p["epoch"]: p for p in curve}
    assert sorted(by_epoch) == list(range(-1, epochs))  # the initial dictionary, then each epoch once
    # the resumed attempt started from the dictionary of the checkpoint it resumed from
    assert m["fits_at_start"] == by_epoch[m["start_epoch"] - 1]["fits_checksum"]
    import torch

    fits = torch.load(out["fits"]["path"], map_location="cpu", weights_only=True)
    assert int(fits["updates"].sum()) == sum(by_epoch[e]["fits_replaced"] for e in range(epochs))
    manifest = read_rows(run / "manifest" / "wild")
    written = read_rows(run / "fits" / "wild")
    assert written.sample_id.is_unique and sorted(written.sample_id) == sorted(manifest.sample_id)
    assert set(written["method"]) == {"spin-fits"}
    assert_one_row_per_manifest_row(run)
