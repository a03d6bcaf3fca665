"""``annotator bench body``: the body-model forward timing."""
from __future__ import annotations

import json

import torch

from annotator.bench.body import bench_forward
from annotator.cli import main


def test_bench_body_prints_median_times(capsys, body_model):
    assert main(["bench", "body", "--batch", "1", "4", "--repeats", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model_id"] == body_model.model_id and res["device"] == "cpu" and res["repeats"] == 2
    assert res["threads"] == torch.get_num_threads()
    assert res["batch_1_ms"] > 0 and res["batch_4_ms"] > 0


def test_bench_forward_times_every_batch_size(body_model):
    res = bench_forward(body_model, (2, 3), repeats=1)
    assert set(res) == {"batch_2_ms", "batch_3_ms"} and all(v > 0 for v in res.values())
