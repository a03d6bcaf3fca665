"""The one-process GPU check: training step, inference, SMPLify, body model, JPEG decode + crop.

    python benchmarks/gpu_check.py --out DIR [--device cuda|cpu] [--tiny] [--body-model PKL]
    benchmarks/gpu_check.sh DIR          # on a lent CUDA machine (installs the carried wheels)

Made for a lent CUDA machine without network, Ray or anny (issue 11, part 4): everything here
runs in one process, imports no Ray, and reads the open body model from ``--body-model``
(default ``.gpucheck/SMPL_NEUTRAL.pkl``, copied there by ``benchmarks/gpu_check_prepare.sh``;
else the project cache). It writes ONE file, ``DIR/gpu_check.json``, rewritten after every
section, so a crash, a timeout or one failing section still leaves the figures measured so far.
Each section has its own time budget (the timed loops size themselves to it, and an alarm
stops a section that overruns it by :data:`GRACE_S`) and its own try/except.

Sections (full setting = the GPU-sized one; ``--tiny`` = a few iterations of each on small
inputs, for the test suite on CPU):

* ``train``: the finetune step as the product runs it (CliffNet, ``to_model_batch`` batch
  dict, forward under autocast (bf16 on CUDA) with channels-last input and network,
  :func:`~annotator.model.outputs.decode`, :func:`~annotator.model.losses.compute_losses`
  in finetune mode with prior rows, backward through a GradScaler, gradient clipping, Adam),
  ResNet-50, 224 px, batch 64 and 256: samples/s, ms/step, peak GPU memory
  (``torch.cuda.max_memory_allocated``), GPU utilisation sampled by ``nvidia-smi`` in a
  background thread (``torch.cuda.utilization`` where nvidia-smi is missing);
* ``infer``: the same network in eval mode under ``inference_mode`` + autocast, forward +
  decode, batch 64 and 256: samples/s;
* ``smplify``: :func:`annotator.fitting.smplify.smplify` from the mean pose on 256 synthetic
  people (exact projected COCO-17 keypoints), default iterations: people/s;
* ``body_model``: ``BodyModel.forward`` at batch 1 and 256 (median ms);
* ``decode``: synthetic 640x480 JPEGs -> 224 px crops, (a) on CPU with
  :func:`annotator.data.images.load_crops` and (b) ``torchvision.io.decode_jpeg`` on the
  device + one ``grid_sample`` crop with :func:`annotator.geometry.crop.crop_grid`: crops/s.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repo is importable without installing it
    sys.path.insert(0, str(ROOT))

OUT_NAME = "gpu_check.json"
DEFAULT_BODY_MODEL = ROOT / ".gpucheck" / "SMPL_NEUTRAL.pkl"
SECTIONS = ("train", "infer", "smplify", "body_model", "decode")
GRACE_S = 60.0
"""A section that runs this long past its budget is stopped (SIGALRM) and reported as failed."""
IMAGE_W, IMAGE_H = 640, 480
JPEG_QUALITY = 90


@dataclass
class Setting:
    backbone: str = "resnet50"
    crop_size: int = 224
    train_batches: tuple[int, ...] = (64, 256)
    infer_batches: tuple[int, ...] = (64, 256)
    warmup: int = 3
    min_iters: int = 5
    max_iters: int = 200
    smplify_batch: int = 256
    smplify_camera_iters: int = 30
    smplify_body_iters: int = 100
    body_batches: tuple[int, ...] = (1, 256)
    body_repeats: int = 50
    decode_images: int = 256
    decode_batch: int = 64
    budget_s: dict[str, float] = field(default_factory=lambda: {
        "train": 150.0, "infer": 50.0, "smplify": 90.0, "body_model": 20.0, "decode": 60.0})


FULL = Setting()
TINY = Setting(backbone="resnet18", crop_size=64, train_batches=(2,), infer_batches=(2,), warmup=1, min_iters=2,
               max_iters=2, smplify_batch=4, smplify_camera_iters=2, smplify_body_iters=3, body_batches=(1, 4),
               body_repeats=2, decode_images=4, decode_batch=4,
               budget_s={"train": 20.0, "infer": 10.0, "smplify": 10.0, "body_model": 5.0, "decode": 10.0})


class SectionTimeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise :class:`SectionTimeout` in the main thread after ``seconds`` (a backstop only)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise SectionTimeout(f"section ran past its budget + {GRACE_S:.0f} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Check:
    """Holds the device, the body model and the results; writes the JSON after every section."""

    def __init__(self, out_dir: Path, device: torch.device, setting: Setting, tiny: bool, body_model: str | None):
        self.out = out_dir / OUT_NAME
        self.device = device
        self.s = setting
        self.tiny = tiny
        self.body_model_path = body_model
        self._body = None
        self.t_start = time.perf_counter()
        self.result: dict = {"meta": environment(device), "setting": {**asdict(setting), "tiny": tiny},
                             "sections": {}, "complete": False}

    # ---------------------------------------------------------------- helpers
    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)

    def autocast(self):
        """As :func:`annotator.steps.runtime.autocast` with ``amp: true``: bf16 on CUDA, off on CPU."""
        cuda = self.device.type == "cuda"
        dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=cuda)

    def body(self):
        if self._body is None:
            from annotator.body import load_body_model
            from annotator.config import BodyModelConfig

            cfg = BodyModelConfig(kind="open", path=self.body_model_path) if self.body_model_path else BodyModelConfig()
            self._body = load_body_model(cfg, self.device)
            self.result["meta"]["body_model"] = {"path": self.body_model_path or "(project cache)",
                                                 "model_id": self._body.model_id,
                                                 "vertices": self._body.num_vertices,
                                                 "checksum": self._body.checksum[:16]}
        return self._body

    def timed(self, fn, budget_s: float) -> dict:
        """Warm up, then time as many calls of ``fn`` as fit ``budget_s`` (min/max iters of the
        setting), with one device sync at the end: per-call seconds, calls, total seconds."""
        for _ in range(self.s.warmup):
            fn()
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        one = max(time.perf_counter() - t0, 1e-6)
        n = int(min(self.s.max_iters, max(self.s.min_iters, budget_s / one)))
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        self.sync()
        total = time.perf_counter() - t0
        return {"iters": n, "seconds": round(total, 4), "s_per_iter": total / n}

    def write(self) -> None:
        self.result["elapsed_s"] = round(time.perf_counter() - self.t_start, 2)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.result, indent=2, default=_jsonable))
        os.replace(tmp, self.out)

    def run(self, names: tuple[str, ...]) -> dict:
        self.write()
        for name in names:
            budget = self.s.budget_s[name]
            t0 = time.perf_counter()
            entry: dict = {"ok": False, "budget_s": budget}
            print(f"[gpu_check] {name} (budget {budget:.0f} s) ...", flush=True)
            try:
                with deadline(budget + GRACE_S):
                    entry.update(getattr(self, f"section_{name}")(budget))
                entry["ok"] = True
            except BaseException as err:  # noqa: BLE001 - one failing section must not stop the others
                if isinstance(err, KeyboardInterrupt):
                    raise
                entry["error"] = f"{type(err).__name__}: {err}"
                entry["traceback"] = traceback.format_exc(limit=8)
                print(entry["traceback"], file=sys.stderr, flush=True)
            entry["section_s"] = round(time.perf_counter() - t0, 2)
            self.result["sections"][name] = entry
            print(f"[gpu_check] {name}: {'ok' if entry['ok'] else entry['error']} ({entry['section_s']} s)", flush=True)
            with contextlib.suppress(Exception):
                self.reset_peak()
            self.write()
        self.result["complete"] = True
        self.write()
        return self.result

    # ---------------------------------------------------------------- inputs
    def model_batch(self, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """A finetune batch dict of ``n`` target rows with prior predictions, made by
        :func:`annotator.data.batching.to_model_batch` from synthetic decoded manifest rows."""
        from annotator.body.joints import TRAIN_CONVENTION
        from annotator.data.batching import PRIOR_COLUMNS, to_model_batch
        from annotator.geometry.crop import bbox_to_center_size, crop_affine

        rng = np.random.default_rng(seed)
        s = self.s.crop_size
        h = rng.uniform(120, 420, n)
        w = h * rng.uniform(0.3, 0.8, n)
        x, y = rng.uniform(0, IMAGE_W - w), rng.uniform(0, IMAGE_H - h)
        bbox = np.stack([x, y, w, h], 1)
        center, side = bbox_to_center_size(torch.from_numpy(bbox), 1.2)
        affine = crop_affine(center, side, float(s))
        kp = np.stack([x[:, None] + rng.uniform(0, 1, (n, 17)) * w[:, None],
                       y[:, None] + rng.uniform(0, 1, (n, 17)) * h[:, None], np.ones((n, 17))], -1)
        cols = {
            "sample_id": np.array([f"gpucheck/{i}" for i in range(n)], dtype=object),
            "image_width": np.full(n, IMAGE_W, np.int64), "image_height": np.full(n, IMAGE_H, np.int64),
            "focal_length": np.array([None] * n, dtype=object),
            "img": rng.integers(0, 256, (n, 3, s, s), dtype=np.uint8),
            "center": center.numpy().astype(np.float32), "box_size": side.numpy().astype(np.float32),
            "affine": affine.numpy().astype(np.float32),
            "keypoints_2d": kp.reshape(n, -1).astype(np.float32),
            "keypoint_convention": np.array([TRAIN_CONVENTION] * n, dtype=object),
            "has_prior": np.ones(n, dtype=bool),
        }
        for col, width in PRIOR_COLUMNS.items():
            cols[col] = (0.1 * rng.standard_normal((n, width))).astype(np.float32)
        return to_model_batch(cols, self.device)

    def network(self):
        """CliffNet as :func:`annotator.steps.runtime.load_network` builds it (channels-last on CUDA)."""
        from annotator.config import NetworkConfig
        from annotator.model import CliffNet

        torch.manual_seed(0)
        net = CliffNet(NetworkConfig(backbone=self.s.backbone), self.s.crop_size, num_betas=self.body().num_betas)
        net = net.to(self.device)
        if self.device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        return net

    # ---------------------------------------------------------------- sections
    def section_train(self, budget: float) -> dict:
        from annotator.config import FinetuneLossWeights
        from annotator.body.joints import TRAIN_CONVENTION
        from annotator.model.losses import compute_losses
        from annotator.model.outputs import decode

        body = self.body()
        weights = FinetuneLossWeights()
        out: dict = {"backbone": self.s.backbone, "crop_size": self.s.crop_size,
                     "amp": str(self.autocast().fast_dtype) if self.device.type == "cuda" else "off",
                     "channels_last": self.device.type == "cuda", "optimizer": "Adam", "by_batch": {}}
        per_batch = budget / len(self.s.train_batches)
        for n in self.s.train_batches:
            t_batch = time.perf_counter()
            self.reset_peak()
            net = self.network().train()
            opt = torch.optim.Adam(net.parameters(), lr=5e-5)
            scaler = torch.amp.GradScaler(self.device.type, enabled=self.device.type == "cuda")
            b = self.model_batch(n)
            last = {}

            def step():
                opt.zero_grad(set_to_none=True)
                with self.autocast():
                    pred = net(b["img"], b["bbox_info"])
                dec = decode(pred, b, body, convention=TRAIN_CONVENTION, reprojection="full")
                loss, _ = compute_losses(pred, dec, b, weights, mode="finetune", reprojection="full", vposer=None,
                                         use_prior_reg=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                scaler.step(opt)
                scaler.update()
                last["loss"] = loss.detach()

            with Utilisation(self.device) as util:
                # the timed window: whatever is left of this batch size's share after set-up
                timing = self.timed(step, max(per_batch * 0.8 - (time.perf_counter() - t_batch), 1.0) / 2)
            loss = float(last["loss"])
            out["by_batch"][str(n)] = {
                "samples_per_s": round(n / timing["s_per_iter"], 2), "ms_per_step": round(1000 * timing["s_per_iter"], 3),
                "steps": timing["iters"], "timed_s": timing["seconds"], "peak_mem_mib": self.peak_mib(),
                "loss_finite": math.isfinite(loss), "utilisation": util.summary()}
            del net, opt, b
        first = out["by_batch"][str(self.s.train_batches[0])]
        out.update({k: first[k] for k in ("samples_per_s", "peak_mem_mib", "utilisation")})
        out["batch"] = self.s.train_batches[0]
        return out

    def section_infer(self, budget: float) -> dict:
        from annotator.body.joints import TRAIN_CONVENTION
        from annotator.model.outputs import decode

        body = self.body()
        net = self.network().eval()
        out: dict = {"backbone": self.s.backbone, "crop_size": self.s.crop_size, "by_batch": {}}
        per_batch = budget / len(self.s.infer_batches)
        for n in self.s.infer_batches:
            self.reset_peak()
            b = self.model_batch(n)

            def step():
                with torch.inference_mode(), self.autocast():
                    pred = net(b["img"], b["bbox_info"])
                    decode({k: v.float() for k, v in pred.items()}, b, body, convention=TRAIN_CONVENTION)

            with Utilisation(self.device) as util:
                timing = self.timed(step, per_batch * 0.6)
            out["by_batch"][str(n)] = {"samples_per_s": round(n / timing["s_per_iter"], 2),
                                       "ms_per_batch": round(1000 * timing["s_per_iter"], 3), "batches": timing["iters"],
                                       "peak_mem_mib": self.peak_mib(), "utilisation": util.summary()}
        first = out["by_batch"][str(self.s.infer_batches[0])]
        out.update({"samples_per_s": first["samples_per_s"], "batch": self.s.infer_batches[0]})
        return out

    def smplify_inputs(self, n: int, seed: int = 1):
        """Exact projected COCO-17 keypoints of ``n`` random upright people in front of the camera."""
        from annotator.body.joints import TRAIN_CONVENTION, select_keypoints
        from annotator.geometry.cameras import perspective_projection

        body = self.body()
        g = torch.Generator().manual_seed(seed)
        orient = torch.tensor([[math.pi, 0.0, 0.0]]).repeat(n, 1) + 0.2 * torch.randn(n, 3, generator=g)
        pose = 0.2 * torch.randn(n, 69, generator=g)
        betas = 0.5 * torch.randn(n, body.num_betas, generator=g)
        transl = torch.stack([torch.randn(n, generator=g) * 0.3, torch.randn(n, generator=g) * 0.2,
                              torch.rand(n, generator=g) * 4 + 3], 1)
        dev = self.device
        with torch.no_grad():
            kp3d = select_keypoints(body(orient.to(dev), pose.to(dev), betas.to(dev), transl.to(dev)).keypoints,
                                    body.keypoint_names, TRAIN_CONVENTION)
        focal = torch.full((n,), 1000.0, device=dev)
        pp = torch.tensor([[IMAGE_W / 2, IMAGE_H / 2]], device=dev).repeat(n, 1)
        kp2d = perspective_projection(kp3d, focal, pp)
        return torch.cat([kp2d, torch.ones_like(kp2d[..., :1])], -1), focal, pp

    def section_smplify(self, budget: float) -> dict:
        from annotator.body.joints import TRAIN_CONVENTION
        from annotator.config import SmplifyConfig
        from annotator.fitting.smplify import smplify

        body = self.body()
        n = self.s.smplify_batch
        kps, focal, pp = self.smplify_inputs(n)
        self.reset_peak()
        warm = SmplifyConfig(batch_size=n, camera_iters=2, body_iters=2)
        smplify(body, kps, TRAIN_CONVENTION, focal, pp, None, warm)
        self.sync()
        cfg = SmplifyConfig(batch_size=n, camera_iters=self.s.smplify_camera_iters, body_iters=self.s.smplify_body_iters)
        runs, fit = [], None
        while not runs or (len(runs) < 3 and sum(runs) * (len(runs) + 1) / len(runs) < budget * 0.7):
            t0 = time.perf_counter()
            fit = smplify(body, kps, TRAIN_CONVENTION, focal, pp, None, cfg)
            self.sync()
            runs.append(time.perf_counter() - t0)
        best = min(runs)
        return {"batch": n, "camera_iters": cfg.camera_iters, "body_iters": cfg.body_iters, "runs": len(runs),
                "seconds": round(best, 4), "people_per_s": round(n / best, 2),
                "ms_per_iteration": round(1000 * best / max(cfg.camera_iters + cfg.body_iters, 1), 3),
                "err2d_px_median": float(fit.err2d_px.float().nanmedian()), "peak_mem_mib": self.peak_mib()}

    def section_body_model(self, budget: float) -> dict:
        body = self.body()
        out: dict = {"vertices": body.num_vertices, "by_batch": {}}
        for n in self.s.body_batches:
            g = torch.Generator().manual_seed(n)
            args = [(0.2 * torch.randn(n, k, generator=g)).to(self.device) for k in (3, 69, body.num_betas)]
            times = []
            t_end = time.perf_counter() + budget / len(self.s.body_batches) * 0.7
            with torch.no_grad():
                for _ in range(self.s.warmup):
                    body(*args)
                self.sync()
                while len(times) < self.s.body_repeats and (len(times) < 2 or time.perf_counter() < t_end):
                    t0 = time.perf_counter()
                    body(*args)
                    self.sync()
                    times.append(time.perf_counter() - t0)
            ms = 1000 * statistics.median(times)
            out["by_batch"][str(n)] = {"ms_median": round(ms, 4), "ms_min": round(1000 * min(times), 4),
                                       "repeats": len(times), "people_per_s": round(n / (ms / 1000), 1)}
        for n in self.s.body_batches:
            out[f"ms_batch_{n}"] = out["by_batch"][str(n)]["ms_median"]
        return out

    def section_decode(self, budget: float) -> dict:
        import torch.nn.functional as F
        import torchvision
        from torchvision.io import decode_jpeg

        from annotator.data.images import load_crops
        from annotator.geometry.crop import bbox_to_center_size, crop_grid

        s, n, bs = self.s.crop_size, self.s.decode_images, self.s.decode_batch
        out: dict = {"images": n, "image_size": [IMAGE_W, IMAGE_H], "crop_size": s, "jpeg_quality": JPEG_QUALITY,
                     "torchvision": torchvision.__version__}
        with tempfile.TemporaryDirectory(prefix="gpucheck_jpg_") as tmp:
            paths, boxes = synthetic_jpegs(Path(tmp), n)
            blobs = [Path(p).read_bytes() for p in paths]
            # (a) CPU: the product's decode + crop
            load_crops(paths[:bs], boxes[:bs], s, 1.2)  # warm-up
            cpu_t, wall_t = time.process_time(), time.perf_counter()
            cpu_crops, done = [], 0
            t_end = wall_t + budget * 0.4
            while done < n and (done == 0 or time.perf_counter() < t_end):
                cb = load_crops(paths[done:done + bs], boxes[done:done + bs], s, 1.2)
                if not cb.ok.all():
                    raise RuntimeError(f"load_crops rejected synthetic JPEGs: {cb.errors}")
                cpu_crops.append(cb.images)
                done += len(cb.ok)
            wall = time.perf_counter() - wall_t
            cpu = time.process_time() - cpu_t
            out["cpu"] = {"crops": done, "crops_per_s": round(done / wall, 2), "crops_per_cpu_s": round(done / max(cpu, 1e-9), 2),
                          "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}

            # (b) torchvision.io.decode_jpeg on the device + one grid_sample crop per batch
            dev = self.device
            data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
            center, side = bbox_to_center_size(torch.from_numpy(boxes).float(), 1.2)
            image_size = torch.tensor([[IMAGE_W, IMAGE_H]], dtype=torch.float32).repeat(n, 1)
            grid = crop_grid(center, side, s, image_size).to(dev)

            def dec(sl):
                imgs = decode_jpeg(data[sl], device=dev) if dev.type == "cuda" else [decode_jpeg(d) for d in data[sl]]
                return torch.stack(imgs)

            def crop(stack, sl):
                return F.grid_sample(stack.float(), grid[sl], mode="bilinear", padding_mode="zeros",
                                     align_corners=False).round_().clamp_(0, 255).to(torch.uint8)

            crop(dec(slice(0, bs)), slice(0, bs))  # warm-up (nvjpeg handle, kernels)
            self.sync()
            t_dec = t_crop = 0.0
            dev_crops, done = [], 0
            t_end = time.perf_counter() + budget * 0.4
            while done < n and (done == 0 or time.perf_counter() < t_end):
                sl = slice(done, min(done + bs, n))
                t0 = time.perf_counter()
                stack = dec(sl)
                self.sync()
                t1 = time.perf_counter()
                dev_crops.append(crop(stack, sl))
                self.sync()
                t_dec, t_crop = t_dec + t1 - t0, t_crop + time.perf_counter() - t1
                done = sl.stop
            out["device"] = {"device": dev.type, "crops": done, "crops_per_s": round(done / (t_dec + t_crop), 2),
                             "decode_images_per_s": round(done / t_dec, 2), "crop_per_s": round(done / t_crop, 2),
                             "batched_decode": dev.type == "cuda"}
            k = min(len(np.concatenate(cpu_crops)), done)
            a = np.concatenate(cpu_crops)[:k].astype(np.float32)
            b = torch.cat(dev_crops)[:k].cpu().numpy().astype(np.float32)
            out["cpu_vs_device_mean_abs_diff"] = round(float(np.abs(a - b).mean()), 3)
        out["crops_per_s"] = out["device"]["crops_per_s"]
        return out


class Utilisation:
    """GPU utilisation (%) sampled every ~0.2 s in a background thread while the block runs."""

    def __init__(self, device: torch.device, period: float = 0.2):
        self.device, self.period = device, period
        self.samples: list[float] = []
        self.source = None
        self._stop = threading.Event()
        self._thread = None

    def _read(self) -> float | None:
        if self.source in (None, "nvidia-smi") and shutil.which("nvidia-smi"):
            idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
            try:
                r = subprocess.run(["nvidia-smi", f"--id={idx}", "--query-gpu=utilization.gpu",
                                    "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
                self.source = "nvidia-smi"
                return float(r.stdout.strip().splitlines()[0])
            except Exception:  # noqa: BLE001
                self.source = None
        try:
            value = float(torch.cuda.utilization(self.device))
            self.source = "torch.cuda.utilization"
            return value
        except Exception:  # noqa: BLE001
            self.source = "unavailable"
            return None

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            v = self._read()
            if v is None:
                return
            self.samples.append(v)

    def __enter__(self):
        if self.device.type == "cuda":
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict:
        if self.device.type != "cuda":
            return {"source": "not measured on cpu", "samples": 0, "mean_pct": None, "max_pct": None}
        x = self.samples
        return {"source": self.source, "samples": len(x), "mean_pct": round(statistics.fmean(x), 1) if x else None,
                "median_pct": statistics.median(x) if x else None, "max_pct": max(x) if x else None}


def synthetic_jpegs(folder: Path, n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` 640x480 JPEGs (smooth gradient + noise, as benchmarks/bench_decode.py) and one
    person-sized box (x, y, w, h) on each."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE_H, 0:IMAGE_W]
    base = np.stack([xx * 255 / (IMAGE_W - 1), yy * 255 / (IMAGE_H - 1), (xx + yy) * 255 / (IMAGE_W + IMAGE_H - 2)], -1)
    paths, boxes = [], []
    for i in range(n):
        img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"synth_{i:04d}.jpg"
        Image.fromarray(img).save(path, quality=JPEG_QUALITY)
        h = rng.uniform(80, 420)
        w = h * rng.uniform(0.3, 0.8)
        boxes.append([rng.uniform(0, IMAGE_W - w), rng.uniform(0, IMAGE_H - h), w, h])
        paths.append(str(path))
    return paths, np.array(boxes, dtype=np.float64)


def environment(device: torch.device) -> dict:
    import importlib.metadata as md

    env: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
                 "platform": platform.platform(), "torch": torch.__version__, "device": str(device),
                 "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    with contextlib.suppress(Exception):
        import torchvision

        env["torchvision"] = torchvision.__version__
    for name in ("numpy", "smplx", "pydantic", "pydantic-core", "roma"):
        try:
            env[name] = md.version(name)
        except md.PackageNotFoundError:
            env[name] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update({"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                    "gpu_memory_mib": round(props.total_memory / 2**20), "multiprocessors": props.multi_processor_count,
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                    "bf16": torch.cuda.is_bf16_supported(), "cudnn_benchmark": torch.backends.cudnn.benchmark})
        with contextlib.suppress(Exception):
            r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            env["nvidia_smi"] = r.stdout.strip()
    return env


def _jsonable(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help=f"folder for {OUT_NAME}")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="a few iterations of everything on small inputs (tests)")
    ap.add_argument("--body-model", default=None,
                    help=f"open body model pkl (default {DEFAULT_BODY_MODEL.relative_to(ROOT)} if present, else the cache)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = tuple(s for s in args.sections.split(",") if s)
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    body_model = args.body_model or (str(DEFAULT_BODY_MODEL) if DEFAULT_BODY_MODEL.exists() else None)
    out_dir = Path(args.out)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / OUT_NAME).write_text(json.dumps({"complete": False, "error": "no CUDA device visible",
                                                    "meta": environment(torch.device("cpu")), "sections": {}}, indent=2))
        print("[gpu_check] no CUDA device visible", file=sys.stderr)
        return 2
    check = Check(out_dir, device, TINY if args.tiny else FULL, args.tiny, body_model)
    result = check.run(names)
    result["meta"]["ray_imported"] = "ray" in sys.modules  # must stay False: the lent machine has no Ray
    check.write()
    failed = [k for k, v in result["sections"].items() if not v["ok"]]
    print(f"[gpu_check] wrote {check.out} in {result['elapsed_s']} s; failed sections: {failed or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
