"""Generation-speed benchmark of the synthetic world.

Reports person instances per second (wall clock and process CPU time: on a shared
machine the CPU-time rate is the stable number), seconds per stage, and the
rasteriser alone on single-person 256 x 256 frames.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

import torch

from annotator.config import BodyModelConfig

RASTER_FRAME = (256, 256)
"""Frame size of the rasteriser-only measurement (the brief's reference size)."""


def raster_only(model, frames: int = 16, seed: int = 0) -> dict[str, float]:
    """Rasterise ``frames`` single-person wild scenes at :data:`RASTER_FRAME`; ms per frame."""
    from annotator.data.synth import pipeline as gen
    from annotator.data.synth import scene
    from annotator.render.raster import rasterize

    assets = gen.build_assets(model)
    spec = scene.DOMAINS["wild"]
    plans = [scene.plan_image(spec, seed, i, RASTER_FRAME) for i in range(frames)]
    for p in plans:
        p.people = p.people[:1]
    posed = gen.pose_people(model, plans)
    points = []
    for k, plan in enumerate(plans):
        v = posed.vertices[k]
        uv = v[:, :2] / v[:, 2:] * plan.focal + torch.as_tensor(plan.principal_point, dtype=v.dtype)
        points.append(torch.cat([uv, v[:, 2:]], dim=1))
    rasterize(points[0], assets.faces, *RASTER_FRAME[::-1])  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for pts in points:
        rasterize(pts, assets.faces, RASTER_FRAME[1], RASTER_FRAME[0])
    return {"raster_ms_per_frame_wall": 1e3 * (time.perf_counter() - wall) / frames,
            "raster_ms_per_frame_cpu": 1e3 * (time.process_time() - cpu) / frames,
            "faces_per_person": int(assets.faces.shape[0])}


def run_bench(domain: str = "wild", num_images: int = 32, seed: int = 0, out: str | None = None,
              body_model: BodyModelConfig | None = None) -> dict[str, Any]:
    """Generate ``num_images`` images (into ``out`` or a temporary directory) and time it.

    Generation is single-threaded by design (see :func:`generate`); so is the raster-only
    measurement, for comparable numbers.
    """
    from annotator.body import load_body_model
    from annotator.data.synth.pipeline import generate

    torch.set_num_threads(1)
    model = load_body_model(body_model or BodyModelConfig())
    tmp = None
    if out is None:
        tmp = out = tempfile.mkdtemp(prefix="synth-bench-")
    try:
        timings: dict[str, float] = {}
        wall, cpu = time.perf_counter(), time.process_time()
        summary = generate(domain, num_images, seed, out, model=model, timings=timings).summary
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    people = summary["num_people"]
    result = {
        "domain": domain, "num_images": num_images, "num_people": people, "torch_threads": 1,
        "seconds_wall": round(wall, 3), "seconds_cpu": round(cpu, 3),
        "people_per_second_wall": round(people / wall, 2), "people_per_second_cpu": round(people / cpu, 2),
        "stage_seconds_wall": {k: round(v, 3) for k, v in sorted(timings.items())},
    }
    result.update({k: round(v, 2) if isinstance(v, float) else v for k, v in raster_only(model, seed=seed).items()})
    return result
