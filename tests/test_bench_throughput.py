"""``annotator bench throughput``: the measurement code on tiny sizes (no timed assertions)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from annotator.bench import monitor
from annotator.bench import throughput as tp

TINY = tp.BenchSettings(instances=12, big_instances=36, batch_size=4, crop_size=32, num_images=2, shard_size=6,
                        bare_batches=2, finetune_steps=2, decode_repeats=1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, body_model):
    torch.set_num_threads(1)
    return tp.prepare_inputs(TINY, str(tmp_path_factory.mktemp("bench")), body=body_model)


def test_prepare_inputs_makes_rows_and_loadable_weights(inputs):
    from annotator.model import CliffNet, load_weights

    assert inputs.rows.num_rows >= TINY.num_images  # every wild image has at least one person
    assert len(set(inputs.rows.column("image_path").to_pylist())) == TINY.num_images
    net = CliffNet(inputs.cfg.network, inputs.cfg.crop.size)
    assert load_weights(net, inputs.weights) == "full"
    assert inputs.cfg.crop.size == 32 and inputs.cfg.ray.inference_batch_size == 4


def test_replicated_manifest_reuses_images_under_new_ids(inputs, tmp_path):
    from annotator.data import read_manifest

    n = 3 * inputs.rows.num_rows + 1
    shards = tp.write_replicated_manifest(inputs.rows, n, str(tmp_path / "m"), shard_size=5)
    assert len(shards) == math.ceil(n / 5)
    table = read_manifest(str(tmp_path / "m"))
    ids = table.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)) == n
    base = dict(zip(inputs.rows.column("sample_id").to_pylist(), inputs.rows.column("image_path").to_pylist()))
    for sid, path in zip(ids, table.column("image_path").to_pylist()):
        copy, original = sid.split("/", 1)
        assert base[original] == path and 0 <= int(copy) <= 3
    # sorted like a manifest, the first batch-sized block spans many images, not copies of one
    first = table.column("image_path").to_pylist()[: inputs.rows.num_rows]
    assert len(set(first)) == TINY.num_images
    with pytest.raises(ValueError, match="no rows"):
        tp.replicate_rows(inputs.rows.slice(0, 0), 4)


def test_peak_memory_tracks_driver_and_a_worker_by_title():
    worker_mib, busy_cpu_s = 120, 0.3
    # allocate, burn a fixed amount of CPU, report the process's own CPU time, then idle so the
    # sampler sees the final CPU count before the process ends
    code = (f"import time; x = b'\\x01' * ({worker_mib} << 20); t = time.process_time()\n"
            f"while time.process_time() - t < {busy_cpu_s}: pass\n"
            "print(time.process_time(), flush=True); time.sleep(1.5)")
    with monitor.PeakMemory(poll_s=0.1) as mem:
        proc = subprocess.Popen([sys.executable, "-c", code, monitor.WORKER_ROLES["actor"]],  # title names the role
                                stdout=subprocess.PIPE, text=True)
        own_cpu_s = float(proc.stdout.readline())
        assert proc.wait(timeout=60) == 0
    assert mem.count("actor") == 1
    assert worker_mib <= mem.peak_mib("actor") < worker_mib + 200
    assert own_cpu_s >= busy_cpu_s and mem.cpu_s("actor") == pytest.approx(own_cpu_s, abs=0.05)
    assert mem.peak_mib("decode") is None and mem.cpu_s("decode") == 0.0
    assert mem.driver_mib > 50  # this process holds torch
    assert not tp.decode_fused(mem.actor_titles)


def test_decode_fused_reads_ray_data_actor_titles():
    fused = "ray::MapWorker(MapBatches(decode_batch)->MapBatches(Predictor))"
    separate = "ray::MapWorker(MapBatches(Predictor))"
    assert tp.decode_fused({fused}) and tp.decode_fused({separate, fused})
    assert not tp.decode_fused({separate}) and not tp.decode_fused(set())


def test_measurements_give_positive_rates(inputs, tmp_path):
    bare = tp.bare_model_rate(inputs, n_batches=2, batch_size=4)
    dec = tp.decode_rate(inputs, repeats=1, batch_size=4)
    shards = tp.write_replicated_manifest(inputs.rows, 12, str(tmp_path / "m"), shard_size=6)
    fin = tp.finetune_rate(inputs, shards, steps=2, batch_size=4)  # the step's own Trainer on cached crops
    assert fin["rows"] == 12
    for rates in (bare, dec, fin):
        assert all(math.isfinite(v) and v > 0 for v in rates.values()), rates
    # several boxes share an image and each image is decoded once per call
    assert dec["crops_per_cpu_s"] >= dec["images_per_cpu_s"]
    assert torch.get_num_threads() == 1  # restored after the 1-thread measurements


def test_marginal_rate_cancels_fixed_start_up():
    start_up, rate = 7.0, 50.0
    small = {"rows": 100, "seconds": start_up + 100 / rate}
    big = {"rows": 1100, "seconds": start_up + 1100 / rate}
    assert tp._marginal_rate(small, big) == pytest.approx(rate)
    assert tp._marginal_rate(small, small) is None


@pytest.mark.slow
def test_decode_is_a_separate_stage_for_cpu_and_gpu_actors(inputs, tmp_path):
    """The real reinfer pipeline: Ray Data must not fuse decode into the Predictor actors,
    neither with CPU actors (same ``num_cpus=1`` as the decode tasks, which Ray Data would
    fuse) nor with GPU actors (a fake GPU: Ray only schedules it, the model runs on CPU)."""
    import ray

    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="WARNING")
    try:
        tp.start_ray(None, inputs.cfg)  # joins this cluster, applies the pipeline's DataContext settings
        shards = tp.write_replicated_manifest(inputs.rows, 12, str(tmp_path / "manifest"), TINY.shard_size)
        gpu_cfg = inputs.cfg.model_copy(update={"ray": inputs.cfg.ray.model_copy(update={"gpus_per_actor": 1})})
        runs = {"cpu": tp.pipeline_run(inputs, shards, 1, "cpu-actor"),
                "gpu": tp.pipeline_run(dataclasses.replace(inputs, cfg=gpu_cfg), shards, 1, "gpu-actor")}
    finally:
        ray.shutdown()
    for kind, run in runs.items():
        assert run["rows"] == 12 and run["actors_seen"] >= 1, (kind, run)  # the actor's title was seen
        assert run["decode_fused_into_actor"] is False, (kind, run)
        assert run["actor_cpu_s"] > 0


@pytest.mark.slow
def test_bench_cli_writes_the_result_contract(tmp_path, capsys):
    from annotator.bench.cli import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "throughput", "--instances", "12", "--big-instances", "36", "--batch-size", "4",
                              "--crop-size", "32", "--num-images", "2", "--ray-cpus", "4", "--out", str(out)])
    assert args.func(args) == 0
    assert "efficiency" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert list(res)[: len(tp.RESULT_KEYS)] == list(tp.RESULT_KEYS) and set(res) == {*tp.RESULT_KEYS, "detail"}
    assert 0 < res["efficiency"] < 5 and 0 < res["scaling_2v1"] < 5
    assert set(res["rss_ratio_20k_vs_2k"]) == {"driver", "actor"}
    assert all(0.5 < r < 2 for r in res["rss_ratio_20k_vs_2k"].values())  # 36 vs 12 rows: memory is flat
    assert res["decode_images_per_s_per_core"] > 0 and res["finetune_samples_per_s"] > 0
    assert res["device"] == (torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    runs = res["detail"]["pipeline"]
    assert [runs[k]["rows"] for k in ("small_1_actor", "small_2_actors", "big_1_actor")] == [12, 12, 36]
    assert np.all([runs[k]["actor_peak_rss_mib"] > 100 for k in runs])  # torch + model in the actor
    assert not any(runs[k]["decode_fused_into_actor"] for k in runs)
    train = res["detail"]["finetune_ray_train"]  # the real finetune step on Ray Train, one epoch
    # every row trained on, with the 1-actor run's output shards as its stored priors
    assert train["samples"] == 12 and train["prior_shards"] == math.ceil(12 / res["detail"]["settings"]["shard_size"])
    assert 0 < train["end_to_end_samples_per_s"] <= train["samples_per_s"]
