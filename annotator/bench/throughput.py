"""``annotator bench throughput``: the batch-inference pipeline measured against the bare model.

One run on one machine measures (ratios are what matter: absolute numbers depend on the
machine and on whatever else runs on it):

* ``efficiency``: end-to-end ``reinfer`` instances/s - the real
  :func:`annotator.steps.infer.infer_datasets` (Ray Data: manifest shards -> decode tasks ->
  Predictor actors -> per-shard commit) over synthetic wild images with a randomly
  initialised CliffNet saved as weights - divided by the bare model's instances/s (CliffNet
  forward + :func:`annotator.model.outputs.decode` on pre-made tensors, same batch size,
  device and thread count as one actor). The pipeline rate includes Ray Data planning and
  actor start-up (model + body model load), as a real run does.
* ``scaling_2v1``: pipeline instances/s with 2 inference actors over 1.
* ``rss_ratio_20k_vs_2k``: peak resident memory of the driver and of the Predictor actor
  for a manifest of ``big_instances`` rows over one of ``instances`` rows (flat = 1.0).
  The big manifest reuses the same few images under new ``sample_id`` values, so it costs
  inference time but no image generation.
* ``decode_images_per_s_per_core``: :func:`annotator.data.images.load_crops` on the
  synthetic JPEGs, one process, one thread, per CPU second.
* ``finetune_samples_per_s``: the finetune step of :func:`annotator.steps.train.train_loop`
  (``to_model_batch`` + CliffNet + decode + ``compute_losses`` + backward + Adam) on
  pre-decoded crops, in this process without Ray (image decode is measured separately).
  ``detail.finetune_ray_train`` has the real step besides: :func:`annotator.steps.train.run_training`
  (``TorchTrainer``, 1 worker, Ray Data inputs: manifest -> prior attached -> shuffle ->
  decode tasks) for one epoch over the ``instances`` manifest, with the 1-actor run's
  predictions as the stored priors; its ``samples_per_s`` is the training loop's own epoch
  rate, ``end_to_end_samples_per_s`` includes the trainer's start-up.

Peak memory and worker CPU seconds come from :class:`annotator.bench.monitor.PeakMemory`
(``/proc`` sampling); Ray workers are found as descendants of this process, so the worker
numbers are only available on a Ray cluster started by the bench itself.
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from annotator import storage
from annotator.bench.monitor import WORKER_ROLES, PeakMemory
from annotator.config import BodyModelConfig, CropConfig, DatasetConfig, JobConfig, ManifestConfig
from annotator.threads import torch_threads

log = logging.getLogger("annotator")

#: Name of the synthetic target dataset the bench writes and infers.
DATASET = "wild"
#: The pipeline step the bench runs (re-inference with the finetuned network).
STEP = "reinfer"
#: Logical CPUs the bench's own Ray cluster advertises at least: two 1-CPU Predictor
#: actors plus a 1-CPU decode task must be schedulable together for ``scaling_2v1``
#: (with fewer, the 2-actor run would starve its decode stage). On a 2-core machine this
#: over-subscribes the cores, which bounds the scaling that can be observed.
MIN_RAY_CPUS = 4
#: Torch threads of one inference actor / train worker: Ray sets ``OMP_NUM_THREADS`` to a
#: worker's CPU count, and both request 1 CPU by default (``ray.*`` config).
WORKER_THREADS = 1
#: Top-level keys of the result document (``--out`` JSON); extra numbers go under "detail".
RESULT_KEYS = ("efficiency", "scaling_2v1", "rss_ratio_20k_vs_2k", "decode_images_per_s_per_core",
               "finetune_samples_per_s", "train_efficiency", "train_startup_s", "device")
#: Decimal places kept for ratios and rates in the result JSON.
DIGITS = 3


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one bench run (defaults: the issue's; tests use tiny ones)."""

    instances: int = 2000
    big_instances: int = 20000
    batch_size: int = 64
    crop_size: int = 64
    backbone: str = "resnet18"
    num_images: int = 50
    """Synthetic wild images generated once; every manifest reuses them."""
    shard_size: int = 500
    """Manifest rows per shard. Ray Data reads one block per shard file and an actor takes a
    whole block, so a manifest of fewer shards than actors cannot use them all; 500 gives
    the 2k manifest 4 shards, like the tail of a real (many-shard) manifest."""
    bare_batches: int = 10
    """Timed batches of the bare-model measurement (taken twice: before and after the 1-actor run)."""
    finetune_steps: int = 10
    ray_train_finetune: bool = True
    """Also run the real finetune step on Ray Train (one epoch over ``instances`` rows)."""
    decode_repeats: int = 3
    """Passes over the synthetic images for the decode measurement."""
    seed: int = 0
    device: str = "auto"
    ray_cpus: int | None = None
    """Logical CPUs of the bench's own Ray cluster (default: max(cores, MIN_RAY_CPUS))."""
    work_dir: str | None = None
    """Where images, manifests and outputs go (default: a temporary directory, removed after)."""


@dataclass
class Inputs:
    """What every measurement shares: the job config, weights, synthetic rows and models."""

    cfg: JobConfig
    weights: str
    rows: pa.Table
    """Manifest rows of the synthetic images (one per person instance)."""
    root: str
    body: Any = field(repr=False)


# ----------------------------------------------------------------------------- inputs
def job_config(settings: BenchSettings, dataset: DatasetConfig, root: str, actors: int = 1) -> JobConfig:
    """The bench's job: one target dataset, CPU-sized crops, the given inference actor count."""
    return JobConfig(
        name="bench", datasets=[dataset], storage={"root": root}, device=settings.device,
        crop=CropConfig(size=settings.crop_size), network={"backbone": settings.backbone},
        manifest=ManifestConfig(shard_size=settings.shard_size),
        ray={"inference_actors": actors, "inference_batch_size": settings.batch_size},
    )


def replicate_rows(rows: pa.Table, n: int) -> pa.Table:
    """``n`` manifest rows cycling over ``rows``, each with a distinct ``sample_id``.

    Row ``i`` copies ``rows[i % len(rows)]`` and gets ``sample_id = "<copy>/<original>"``
    with ``copy = i // len(rows)`` zero-padded, so a large manifest reuses the same images
    (inference cost without generation cost) and, once sorted by ``sample_id`` as manifests
    are, a batch still spans many different images the way a real manifest does."""
    if rows.num_rows == 0:
        raise ValueError("replicate_rows: no rows to replicate")
    i = np.arange(n)
    out = rows.take(pa.array(i % rows.num_rows))
    ids = np.char.add(np.char.mod("%07d/", i // rows.num_rows),
                      np.asarray(out.column("sample_id").to_pylist(), dtype=str))
    return out.set_column(out.schema.get_field_index("sample_id"), "sample_id", pa.array(ids.tolist(), pa.string()))


def write_replicated_manifest(rows: pa.Table, n: int, out_dir: str, shard_size: int) -> list[str]:
    """Write ``n`` replicated rows as a manifest; returns its shard paths."""
    from annotator.data import manifest_shards, write_manifest

    write_manifest(replicate_rows(rows, n), out_dir, shard_size, dataset=DATASET)
    return manifest_shards(out_dir)


def prepare_inputs(settings: BenchSettings, root: str, body=None) -> Inputs:
    """Generate the synthetic images (kept if ``root`` already has them), build their
    manifest, save randomly initialised CliffNet weights.

    ``body``: the already loaded default body model (loaded here if None)."""
    from annotator.body import load_body_model
    from annotator.data import build_manifest, read_manifest
    from annotator.data.synth.pipeline import dataset_config, generate
    from annotator.model import CliffNet
    from annotator.steps.runtime import save_torch

    body = body if body is not None else load_body_model(BodyModelConfig())
    synth_dir = storage.join(root, "synth", DATASET)
    dataset = dataset_config(synth_dir, DATASET, DATASET, "target")
    if not storage.exists(dataset.path):
        generate(DATASET, settings.num_images, settings.seed, synth_dir, model=body)
    cfg = job_config(settings, dataset, root)
    base_dir = storage.join(root, "manifest", "base")
    build_manifest(dataset, cfg.manifest, base_dir, storage.join(root, "rejects", "base"))
    rows = read_manifest(base_dir)
    torch.manual_seed(settings.seed)
    net = CliffNet(cfg.network, cfg.crop.size, num_betas=cfg.body_model.num_betas)
    weights = storage.join(root, "checkpoints", "random", "model.pt")
    save_torch({"model": net.state_dict()}, weights)
    return Inputs(cfg=cfg, weights=weights, rows=rows, root=root, body=body)


def numpy_batch(rows: pa.Table) -> dict[str, np.ndarray]:
    """Manifest rows as the numpy batch Ray Data hands to ``map_batches`` (list columns
    become object arrays of arrays, which :func:`stack_list_column` accepts)."""
    return {name: rows.column(name).to_numpy(zero_copy_only=False) for name in rows.column_names}


def decoded_batches(inputs: Inputs, n_batches: int, batch_size: int) -> list[dict[str, np.ndarray]]:
    """``n_batches`` decoded batches (``decode_batch`` output) cycling over the synthetic rows."""
    from annotator.data.batching import decode_batch

    rows = replicate_rows(inputs.rows, n_batches * batch_size)
    return [decode_batch(numpy_batch(rows.slice(i * batch_size, batch_size)), inputs.cfg.crop)
            for i in range(n_batches)]


# ----------------------------------------------------------------------------- measurements
@dataclass
class Timer:
    """Wall and CPU (this process) seconds of a block."""

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> "Timer":
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self._w, time.process_time() - self._c


def bare_model_rate(inputs: Inputs, n_batches: int, batch_size: int) -> dict[str, float]:
    """Instances/s of CliffNet forward + decode on pre-made tensors (one warm-up batch)."""
    from annotator.body.joints import TRAIN_CONVENTION
    from annotator.data.batching import to_model_batch
    from annotator.model.cliff import net_inputs
    from annotator.model.outputs import decode
    from annotator.steps.runtime import autocast, load_network, pick_device

    cfg = inputs.cfg
    device = pick_device(cfg)
    net = load_network(cfg, inputs.weights, device).eval()
    body = inputs.body.to(device)
    batch = to_model_batch(decoded_batches(inputs, 1, batch_size)[0], device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        with torch.inference_mode():
            with autocast(cfg, device):
                pred = net(**net_inputs(batch))
            decode({k: v.float() for k, v in pred.items()}, batch, body, convention=TRAIN_CONVENTION)

    with torch_threads(WORKER_THREADS):
        step()
        sync()
        with Timer() as t:
            for _ in range(n_batches):
                step()
            sync()
    n = n_batches * batch_size
    return {"instances_per_s": n / t.wall, "instances_per_cpu_s": n / max(t.cpu, 1e-9)}


def pipeline_run(inputs: Inputs, shards: list[str], actors: int, label: str) -> dict[str, Any]:
    """One real ``reinfer`` run (:func:`annotator.steps.infer.infer_datasets`) over
    ``shards`` into a fresh output folder; rate, row count and peak memory."""
    from annotator.steps.base import RunLayout, StepContext
    from annotator.steps.infer import infer_datasets

    cfg = inputs.cfg.model_copy(update={"ray": inputs.cfg.ray.model_copy(update={"inference_actors": actors})})
    layout = RunLayout(storage.join(inputs.root, "runs", label))
    ctx = StepContext(cfg=cfg, layout=layout, results={"manifest": {"body_model_path": None}},
                      fingerprints={STEP: f"bench-{label}"}, restart={STEP})  # restart: never resume old output
    with PeakMemory() as mem, Timer() as t:
        res = infer_datasets(ctx, STEP, {DATASET: shards}, inputs.weights, layout.pseudo_gt, cfg.method)
    got = res["datasets"][DATASET]
    if got["rejects"]:
        raise RuntimeError(f"bench run {label}: {got['rejects']} rows rejected (synthetic images unreadable?)")
    return {"rows": got["rows"], "actors": actors, "seconds": round(t.wall, 2), "out_dir": got["out_dir"],
            "instances_per_s": got["rows"] / t.wall,
            "driver_start_rss_mib": round(mem.driver_start_kb / 1024.0, 1),
            "driver_peak_rss_mib": mem.driver_mib, "actor_peak_rss_mib": mem.peak_mib("actor"),
            "decode_worker_peak_rss_mib": mem.peak_mib("decode"), "actors_seen": mem.count("actor"),
            "actor_cpu_s": mem.cpu_s("actor"), "decode_workers_cpu_s": mem.cpu_s("decode"),
            "driver_cpu_s": round(t.cpu, 2), "decode_fused_into_actor": decode_fused(mem.actor_titles)}


def decode_fused(actor_titles: set[str]) -> bool:
    """Whether Ray Data ran the decode stage inside the inference actors (their process
    title names every operator fused into the actor, e.g.
    ``ray::MapWorker(MapBatches(decode_batch)->MapBatches(Predictor))``)."""
    return any(WORKER_ROLES["decode"] in t for t in actor_titles)


def decode_rate(inputs: Inputs, repeats: int, batch_size: int) -> dict[str, float]:
    """``load_crops`` images/s and crops/s per CPU second, single thread, in this process."""
    from annotator.data.batching import stack_list_column
    from annotator.data.images import load_crops

    rows = numpy_batch(inputs.rows)
    paths = [str(p) for p in rows["image_path"]]
    boxes, _ = stack_list_column(rows["bbox"], 4)
    starts = range(0, len(paths), batch_size)
    images = sum(len(set(paths[i:i + batch_size])) for i in starts) * repeats  # each decoded once per call
    crop = inputs.cfg.crop
    with torch_threads(1):
        load_crops(paths[:batch_size], boxes[:batch_size], crop.size, crop.bbox_scale)  # warm-up
        with Timer() as t:
            for _ in range(repeats):
                for i in starts:
                    load_crops(paths[i:i + batch_size], boxes[i:i + batch_size], crop.size, crop.bbox_scale)
    crops = len(paths) * repeats
    return {"images_per_cpu_s": images / max(t.cpu, 1e-9), "crops_per_cpu_s": crops / max(t.cpu, 1e-9),
            "images_per_s": images / t.wall}


def finetune_rate(inputs: Inputs, shards: list[str], steps: int, batch_size: int,
                  priors_from: str | None = None) -> dict[str, float]:
    """Samples/s of the finetune step's own code in this process (no Ray Train): the crop
    cache of ``shards``, :func:`annotator.steps.train.load_rows` and
    :meth:`annotator.steps.trainer.Trainer.epoch` - the functions every Ray Train worker runs -
    for ``steps`` optimiser steps after one warm-up step, on the worker's thread count."""
    from annotator.data import crop_cache
    from annotator.steps.runtime import load_network, pick_device
    from annotator.steps.train import load_rows, train_settings
    from annotator.steps.trainer import StepSettings, Trainer, epoch_order

    cfg = inputs.cfg
    tcfg = train_settings(cfg, "finetune").model_copy(update={"batch_size": batch_size})
    device = pick_device(cfg)
    torch.manual_seed(tcfg.seed)
    cache_dir = storage.join(inputs.root, "crops-in-process")
    cache = [crop_cache.cache_shard_path(cache_dir, s) for s in shards]
    for s, c in zip(shards, cache):
        if not storage.exists(c):
            crop_cache.build_shard(s, c, cfg.crop)
    spec = {"manifest": shards, "cache": cache}
    if priors_from:
        spec.update(attach="attach_prior", dirs={DATASET: priors_from})
    body = inputs.body.to(device)
    rows = load_rows(spec, cfg, body)
    net = load_network(cfg, inputs.weights, device)
    # the training step's own settings (loss mode, augmentation, reprojection, prior regulariser)
    trainer = Trainer(net, body, tcfg, StepSettings.of(tcfg, cfg.crop.size), device, total_steps=steps + 1)
    order = epoch_order(len(rows), tcfg.seed, 0)
    order = order.repeat((steps + 1) * batch_size // max(len(order), 1) + 1)[: (steps + 1) * batch_size]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch_threads(WORKER_THREADS):
        trainer.epoch(rows, order[:batch_size], 1)  # warm-up
        sync()
        with Timer() as t:
            trainer.epoch(rows, order[batch_size:], steps)
            sync()
    n = steps * batch_size
    return {"samples_per_s": n / t.wall, "samples_per_cpu_s": n / max(t.cpu, 1e-9), "rows": len(rows)}


def finetune_ray_train_rate(inputs: Inputs, shards: list[str], batch_size: int, label: str,
                            priors_from: str | None = None) -> dict[str, Any]:
    """One epoch of the real ``finetune`` step on Ray Train over ``shards``.

    :func:`annotator.steps.train.run_training` with ``TorchTrainer`` (1 worker, CPUs/GPUs
    per ``ray.*``), starting from the bench weights; ``priors_from``: a folder of inference
    outputs for the same manifest shards, copied in as the stored ``prior/`` predictions
    (else every row has ``has_prior = False``). Returns the training loop's epoch rate
    (``samples_per_s``, decode tasks streaming alongside) and the end-to-end rate
    including trainer start-up."""
    from annotator.steps.base import RunLayout, StepContext
    from annotator.steps.train import run_training

    cfg = inputs.cfg
    cfg = cfg.model_copy(update={
        "finetune": cfg.finetune.model_copy(update={"epochs": 1, "batch_size": batch_size}),
        "steps": [s for s in cfg.steps if s != "train-pose-prior"],  # no VPoser, as in finetune_rate
        "ray": cfg.ray.model_copy(update={"num_workers": 1}),
    })
    layout = RunLayout(storage.join(inputs.root, "runs", label))
    copied = 0
    if priors_from:
        for src in storage.listdir(priors_from, ".parquet"):
            storage.write_bytes_atomic(storage.join(layout.prior(DATASET), os.path.basename(src)),
                                       storage.read_bytes(src))
            copied += 1
    ctx = StepContext(cfg=cfg, layout=layout, fingerprints={"finetune": f"bench-{label}"}, restart={"finetune"},
                      results={"manifest": {"body_model_path": None, "datasets": {DATASET: {"shards": shards}}},
                               "pretrain": {"weights": inputs.weights}})
    with Timer() as t:
        res = run_training(ctx, "finetune")
    metrics = res["metrics"]
    samples = int(metrics["samples"])
    return {"samples": samples, "samples_per_s": float(metrics["samples_per_s"]),
            "end_to_end_samples_per_s": samples / t.wall, "seconds": round(t.wall, 2),
            "prior_shards": copied, "workers": cfg.ray.num_workers, "batch_size": batch_size}


# ----------------------------------------------------------------------------- driver
def start_ray(num_cpus: int | None, cfg: JobConfig) -> bool:
    """Start a local Ray (or join ``$RAY_ADDRESS``) with Data progress bars off; True if
    this call started it (so the caller shuts it down)."""
    import ray

    from annotator.run import init_ray

    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            # address="local": a fresh cluster of our own, even if another one runs on this machine
            ray.init(address="local", num_cpus=num_cpus or max(os.cpu_count() or 1, MIN_RAY_CPUS),
                     include_dashboard=False, logging_level=logging.WARNING)
        started = True
    init_ray(cfg)  # the pipeline's own DataContext settings (progress bars off, ordered)
    return started


def device_name(cfg: JobConfig) -> str:
    from annotator.steps.runtime import pick_device

    device = pick_device(cfg)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _marginal_rate(small: dict[str, Any], big: dict[str, Any]) -> float | None:
    """Steady-state pipeline instances/s: extra rows over extra seconds of two runs with the
    same actor count, which cancels the fixed start-up cost (planning, actor model load)."""
    extra = big["seconds"] - small["seconds"]
    return (big["rows"] - small["rows"]) / extra if big["rows"] > small["rows"] and extra > 0 else None


def _per_cpu_s(run: dict[str, Any]) -> float | None:
    """Rows of a pipeline run per CPU second of its inference actors (None if none was seen)."""
    return run["rows"] / run["actor_cpu_s"] if run["actor_cpu_s"] else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, DIGITS) if a is not None and b else None


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, DIGITS) if isinstance(v, float) else v for k, v in d.items()}


def run_bench(settings: BenchSettings = BenchSettings()) -> dict[str, Any]:
    """Run every measurement once; returns the result document (see module docstring)."""
    import ray

    if settings.instances < 1 or settings.big_instances < 1:
        raise ValueError("bench: --instances and --big-instances must be >= 1")
    tmp = None
    root = settings.work_dir or (tmp := tempfile.mkdtemp(prefix="annotator-bench-"))
    started = False
    try:
        with Timer() as total:
            with Timer() as t_prep:
                inputs = prepare_inputs(settings, root)
            started = start_ray(settings.ray_cpus, inputs.cfg)
            small = write_replicated_manifest(inputs.rows, settings.instances,
                                              storage.join(root, "manifest", "small"), settings.shard_size)
            big = write_replicated_manifest(inputs.rows, settings.big_instances,
                                            storage.join(root, "manifest", "big"), settings.shard_size)
            bare_before = bare_model_rate(inputs, settings.bare_batches, settings.batch_size)
            one = pipeline_run(inputs, small, 1, "small-1actor")
            bare_after = bare_model_rate(inputs, settings.bare_batches, settings.batch_size)
            two = pipeline_run(inputs, small, 2, "small-2actors")
            large = pipeline_run(inputs, big, 1, "big-1actor")
            dec = decode_rate(inputs, settings.decode_repeats, settings.batch_size)
            fin = finetune_rate(inputs, small, settings.finetune_steps, settings.batch_size,
                                priors_from=one["out_dir"])
            with Timer() as t_train:
                fin_ray = (finetune_ray_train_rate(inputs, small, settings.batch_size, "finetune-ray-train",
                                                   priors_from=one["out_dir"])
                           if settings.ray_train_finetune else None)
        bare = (bare_before["instances_per_s"] + bare_after["instances_per_s"]) / 2.0
        bare_cpu = (bare_before["instances_per_cpu_s"] + bare_after["instances_per_cpu_s"]) / 2.0
        marginal = _marginal_rate(one, large)
        result = {
            "efficiency": _ratio(one["instances_per_s"], bare),
            "scaling_2v1": _ratio(two["instances_per_s"], one["instances_per_s"]),
            "rss_ratio_20k_vs_2k": {"driver": _ratio(large["driver_peak_rss_mib"], one["driver_peak_rss_mib"]),
                                    "actor": _ratio(large["actor_peak_rss_mib"], one["actor_peak_rss_mib"])},
            "decode_images_per_s_per_core": round(dec["images_per_cpu_s"], 1),
            "finetune_samples_per_s": round(fin["samples_per_s"], 2),
            # Ray Train's epoch rate over the same step's in-process rate, both on cached crops
            "train_efficiency": _ratio(fin_ray["samples_per_s"], fin["samples_per_s"]) if fin_ray else None,
            "train_startup_s": (round(fin_ray["seconds"] - fin_ray["samples"] / fin_ray["samples_per_s"], 1)
                                if fin_ray else None),
            "device": device_name(inputs.cfg),
            "detail": {
                "settings": asdict(settings),
                "instances_big_run": large["rows"],
                "synthetic_images": len(set(inputs.rows.column("image_path").to_pylist())),
                "synthetic_instances": inputs.rows.num_rows,
                "ray_cpus": int(ray.cluster_resources().get("CPU", 0)),
                "machine_cores": os.cpu_count(),
                "load_avg_1m_end": round(os.getloadavg()[0], 2),
                "worker_threads": WORKER_THREADS,
                "bare_model": {"before": _rounded(bare_before), "after": _rounded(bare_after),
                               "instances_per_s": round(bare, 2), "instances_per_cpu_s": round(bare_cpu, 2)},
                "efficiency_big_run": _ratio(large["instances_per_s"], bare),
                "actor_cpu_rows_per_s": round(one["rows"] / one["actor_cpu_s"], 1) if one["actor_cpu_s"] else None,
                # the same ratio on CPU time (pipeline rows per actor CPU s over bare-model instances
                # per CPU s): what efficiency would be on free cores, whatever else runs on this machine
                "efficiency_actor_cpu": {"small": _ratio(_per_cpu_s(one), bare_cpu),
                                         "big": _ratio(_per_cpu_s(large), bare_cpu)},
                "efficiency_marginal": _ratio(marginal, bare),
                "marginal_instances_per_s": round(marginal, 2) if marginal else None,
                "pipeline": {"small_1_actor": _rounded(one), "small_2_actors": _rounded(two),
                             "big_1_actor": _rounded(large)},
                "decode": _rounded(dec),
                "finetune": {**_rounded(fin), "path": "in-process Trainer.epoch on the crop cache (no Ray Train)"},
                "finetune_ray_train": ({**_rounded(fin_ray), "path": "run_training: TorchTrainer, Ray Data inputs"}
                                       if fin_ray else None),
                "driver_ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
                "seconds": {"prepare": round(t_prep.wall, 1), "finetune_ray_train": round(t_train.wall, 1)},
            },
        }
        result["detail"]["seconds"]["total"] = round(total.wall, 1)
        return result
    finally:
        if started:
            ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def format_table(result: dict[str, Any]) -> str:
    """The human-readable summary printed by ``annotator bench throughput``."""
    d = result["detail"]
    one, two, big = (d["pipeline"][k] for k in ("small_1_actor", "small_2_actors", "big_1_actor"))
    rss = result["rss_ratio_20k_vs_2k"]
    rows = [
        ("device", result["device"],
         f"{d['machine_cores']} cores, Ray CPUs {d['ray_cpus']}, {d['worker_threads']} torch thread/worker"),
        ("efficiency", result["efficiency"],
         f"pipeline {one['instances_per_s']:.1f}/s vs bare model {d['bare_model']['instances_per_s']:.1f}/s "
         f"({one['rows']} rows in {one['seconds']} s)"),
        ("  big run", d["efficiency_big_run"],
         f"{big['instances_per_s']:.1f}/s ({big['rows']} rows in {big['seconds']} s)"),
        ("  marginal", d["efficiency_marginal"], f"{d['marginal_instances_per_s']}/s: start-up cost cancelled"),
        ("  on CPU time", d["efficiency_actor_cpu"]["small"],
         f"{d['actor_cpu_rows_per_s']} rows per actor CPU s (incl. actor start-up; big run "
         f"{d['efficiency_actor_cpu']['big']}) vs bare {d['bare_model']['instances_per_cpu_s']}/CPU s; decode stage "
         f"{'fused into the actor' if one['decode_fused_into_actor'] else 'separate'} "
         f"({one['decode_workers_cpu_s']} CPU s in decode workers)"),
        ("scaling_2v1", result["scaling_2v1"], f"2 actors {two['instances_per_s']:.1f}/s"),
        ("rss_ratio driver", rss["driver"],
         f"{one['driver_peak_rss_mib']} -> {big['driver_peak_rss_mib']} MiB peak "
         f"({one['rows']} -> {big['rows']} rows)"),
        ("rss_ratio actor", rss["actor"], f"{one['actor_peak_rss_mib']} -> {big['actor_peak_rss_mib']} MiB peak"),
        ("decode img/s/core", result["decode_images_per_s_per_core"],
         f"{d['decode']['crops_per_cpu_s']:.0f} crops/CPU s, {result['detail']['settings']['crop_size']} px"),
        ("finetune samples/s", result["finetune_samples_per_s"], d["finetune"]["path"]),
    ]
    if d["finetune_ray_train"]:
        rt = d["finetune_ray_train"]
        rows.append(("  on Ray Train", rt["samples_per_s"],
                     f"epoch rate of run_training (1 worker, {rt['samples']} samples); "
                     f"{rt['end_to_end_samples_per_s']}/s with start-up ({rt['seconds']} s)"))
        rows.append(("train_efficiency", result["train_efficiency"],
                     f"Ray Train epoch rate / in-process rate (cached crops); start-up {result['train_startup_s']} s"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {str(value):>10}  {note}" for name, value, note in rows]
    lines.append(f"total {d['seconds']['total']} s (prepare {d['seconds']['prepare']} s), "
                 f"load average at end {d['load_avg_1m_end']}")
    return "\n".join(lines)
