"""Issue 12 ("Trust"): interrupted runs are never reported done, no file can run code,
secrets stay out of Ray's logs, clear one-line errors, and one hostile file never kills a
dataset. Everything here is fast except the Ray session-folder grep (one local Ray)."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from annotator import run as run_mod
from annotator.config import ConfigError, JobConfig, apply_override
from annotator.layout import RunLayout
from annotator.steps.base import read_state, read_state_record

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


# --------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _fresh_log_handler():
    """``main()`` binds the job log to the sys.stdout of the moment: drop it after each test
    (pytest swaps the captured streams between tests)."""
    import logging

    logger = logging.getLogger("annotator")
    before = list(logger.handlers)
    yield
    logger.handlers[:] = before


def _job(tmp_path: Path, **changes) -> JobConfig:
    data = {"name": "t", "storage": {"root": str(tmp_path / "runs")},
            "datasets": [{"name": "lab", "format": "synth", "role": "aux3d", "synth": {"domain": "lab"}},
                         {"name": "wild", "format": "synth", "role": "target", "synth": {"domain": "wild"}}],
            "steps": ["manifest", "pretrain", "predict-prior", "finetune"]}
    data.update(changes)
    return JobConfig.model_validate(data).with_absolute_paths()


class FakeSteps:
    """Step functions that write one output file per call through ``fresh_output_dir``
    (the real steps' contract), and can be told to stop with Ctrl-C."""

    def __init__(self, layout: RunLayout):
        self.layout, self.calls, self.interrupt = layout, [], {}

    def out_dir(self, step: str) -> str:
        return os.path.join(self.layout.root, "out", step)

    def make(self, step: str):
        def fn(ctx):
            mode = self.interrupt.get(step)
            if mode == "before":  # Ctrl-C before the step touched its outputs
                raise KeyboardInterrupt
            ctx.fresh_output_dir(step, self.out_dir(step))
            n = len(self.calls)
            self.calls.append(step)
            Path(self.out_dir(step), f"part-{n:05d}").write_text(step)
            if mode == "after":  # Ctrl-C half-way: some output written
                raise KeyboardInterrupt
            return {"n": n, "datasets": {}, "epochs": 1, "metrics": {}}
        return fn

    def install(self, monkeypatch):
        monkeypatch.setattr(run_mod, "_step_functions", lambda: {s: self.make(s) for s in run_mod.STEPS})
        monkeypatch.setattr(run_mod, "init_ray", lambda cfg: None)

    def parts(self, step: str) -> list[str]:
        return sorted(p.name for p in Path(self.out_dir(step)).glob("part-*"))


# --------------------------------------------------------------------------- 1. interrupted --force
def test_interrupted_forced_step_is_redone_and_later_steps_too(tmp_path, monkeypatch):
    cfg = _job(tmp_path)
    layout = RunLayout(cfg.run_root)
    fake = FakeSteps(layout)
    fake.install(monkeypatch)
    first = run_mod.run_job(cfg)
    assert [s for s, v in first.items() if v["status"] == "ran"] == ["manifest", "pretrain", "predict-prior", "finetune"]
    old_prior = fake.parts("predict-prior")

    # --force pretrain, Ctrl-C half-way through it
    fake.interrupt = {"pretrain": "after"}
    with pytest.raises(run_mod.RunInterrupted) as err:
        run_mod.run_job(cfg, force=["pretrain"])
    assert err.value.step == "pretrain"
    for step in ("pretrain", "predict-prior", "finetune"):  # no completion record survives
        assert read_state(layout, step) is None
        assert read_state_record(layout, step)["status"] == "pending"
    assert read_state(layout, "manifest") is not None

    # the rerun (no --force) redoes pretrain and everything after it; manifest stays done
    fake.interrupt = {}
    n_before = len(fake.calls)
    again = run_mod.run_job(cfg)
    assert again["manifest"]["status"] == "skipped (done)"
    assert [s for s, v in again.items() if v["status"] == "ran"] == ["pretrain", "predict-prior", "finetune"]
    assert fake.calls[n_before:] == ["pretrain", "predict-prior", "finetune"]
    # predict-prior's outputs made from the old pretrain are gone
    assert not set(old_prior) & set(fake.parts("predict-prior"))
    # and now everything is done: a rerun skips all
    assert all(v["status"] == "skipped (done)" for v in run_mod.run_job(cfg).values())


def test_later_step_interrupted_before_it_cleaned_up_restarts_from_scratch(tmp_path, monkeypatch):
    cfg = _job(tmp_path)
    fake = FakeSteps(RunLayout(cfg.run_root))
    fake.install(monkeypatch)
    run_mod.run_job(cfg)
    stale = fake.parts("predict-prior")
    # forced pretrain completes, then Ctrl-C at the start of predict-prior (its old outputs untouched)
    fake.interrupt = {"predict-prior": "before"}
    with pytest.raises(run_mod.RunInterrupted) as err:
        run_mod.run_job(cfg, force=["pretrain"])
    assert err.value.step == "predict-prior" and err.value.completed == ["manifest", "pretrain"]
    fake.interrupt = {}
    again = run_mod.run_job(cfg)
    assert again["predict-prior"]["status"] == "ran"
    assert not set(stale) & set(fake.parts("predict-prior"))  # never kept beside the new pretrain


def test_an_interrupted_resume_keeps_the_work_done_since_the_restart(tmp_path, monkeypatch):
    cfg = _job(tmp_path)
    fake = FakeSteps(RunLayout(cfg.run_root))
    fake.install(monkeypatch)
    fake.interrupt = {"pretrain": "after"}
    with pytest.raises(run_mod.RunInterrupted):
        run_mod.run_job(cfg)
    partial = fake.parts("pretrain")
    fake.interrupt = {}
    run_mod.run_job(cfg)
    assert set(partial) <= set(fake.parts("pretrain"))  # resumed, not wiped (checkpoints survive)


# --------------------------------------------------------------------------- 2. Ctrl-C
def test_ctrl_c_stops_the_job_even_after_a_library_left_its_sigint_handler(tmp_path, monkeypatch, capsys):
    cfg = _job(tmp_path)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    fake = FakeSteps(RunLayout(cfg.run_root))
    fake.install(monkeypatch)
    steps = run_mod._step_functions()

    def pretrain(ctx):  # what Ray Tune / Ray Train leave behind after fit(): a handler that swallows SIGINT
        signal.signal(signal.SIGINT, lambda *a: None)
        return steps["pretrain"](ctx)

    def predict_prior(ctx):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)  # must not get here
        raise AssertionError("Ctrl-C was ignored")

    monkeypatch.setattr(run_mod, "_step_functions", lambda: {**steps, "pretrain": pretrain,
                                                             "predict-prior": predict_prior})
    old = signal.getsignal(signal.SIGINT)
    try:
        t0 = time.monotonic()
        rc = run_mod.main([str(job)])
        assert time.monotonic() - t0 < 20
    finally:
        signal.signal(signal.SIGINT, old)
    err = capsys.readouterr().err
    assert rc == 130
    assert "interrupted" in err and "'predict-prior'" in err and "resume" in err
    assert read_state(RunLayout(cfg.run_root), "predict-prior") is None
    # Ray Train v2 / Tune no longer get to install their "graceful abort" handlers
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    assert DataParallelTrainer._register_sigint_handler(None, None) is None
    assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"


# --------------------------------------------------------------------------- 3. names, --set
@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "a\\b", "x" * 200])
def test_dataset_and_job_names_must_be_safe_folder_names(name):
    ds = {"name": name, "format": "synth", "role": "target", "synth": {"domain": "wild"}}
    with pytest.raises(ValueError):
        JobConfig.model_validate({"name": "ok", "datasets": [ds]})
    with pytest.raises(ValueError):
        JobConfig.model_validate({"name": name, "datasets": [{**ds, "name": "ok"}]})


def test_bad_set_yaml_is_one_config_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"pretrain.epochs.*not valid YAML"):
        apply_override({}, "pretrain.epochs=[1")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "t", "datasets": []}))
    assert run_mod.main([str(job), "--set", "pretrain.epochs=[1"]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "Traceback" not in err


# --------------------------------------------------------------------------- 4. checkpoints
class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"epoch": 99, "model": _RunsCode(marker)}))


def test_checkpoints_load_weights_only_and_a_planted_pickle_never_runs(tmp_path, caplog):
    import torch

    from annotator.steps.runtime import UnsafeCheckpointError, load_torch, save_torch
    from annotator.steps.train import latest_checkpoint

    # what a training step stores: model + Adam state + epoch + step + metrics, all weights_only-safe
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    metrics = {"loss": 0.5, "epoch": 0, "start_epoch": 0, "samples": 4, "samples_per_s": 12.5, "kp2d": 0.1}
    ckpt = tmp_path / "checkpoints" / "pretrain"
    good = ckpt / "checkpoint_000000" / "state.pt"
    good.parent.mkdir(parents=True)
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 0, "step": "pretrain",
                "metrics": metrics}, good)
    state = load_torch(str(good))
    assert state["metrics"] == metrics and state["epoch"] == 0
    torch.optim.Adam(torch.nn.Linear(3, 2).parameters()).load_state_dict(state["optimizer"])
    save_torch({"model": state["model"], "step": "pretrain", "epoch": 0}, str(ckpt / "model.pt"))
    assert set(load_torch(str(ckpt / "model.pt"))) == {"model", "step", "epoch"}

    marker = tmp_path / "PWNED"
    _plant(ckpt / "x" / "state.pt", marker)  # newer epoch: would win if it were loaded
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_torch(str(ckpt / "x" / "state.pt"))
    caplog.clear()
    assert latest_checkpoint(str(ckpt)) == str(good)  # skipped, with a message
    assert "refused" in caplog.text and "x/state.pt" in caplog.text
    assert not marker.exists()


def test_code_executing_network_weights_refused_in_the_driver_before_ray(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "PWNED"
    weights = tmp_path / "weights.pt"
    _plant(weights, marker)
    cfg = _job(tmp_path, network={"weights": str(weights)})
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    monkeypatch.setattr(run_mod, "init_ray", lambda cfg: pytest.fail("Ray started"))
    assert run_mod.main([str(job)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: network.weights") and "refused" in err[0]
    assert not marker.exists()


# --------------------------------------------------------------------------- clear errors before Ray
def test_input_paths_and_storage_root_are_checked_before_ray_one_line_each(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_mod, "init_ray", lambda cfg: pytest.fail("Ray started"))
    (tmp_path / "notadir").write_text("x")
    datasets = [{"name": "a", "format": "coco", "role": "target", "path": str(tmp_path / "missing.json")},
                {"name": "b", "format": "coco", "role": "target", "path": str(tmp_path / "notadir"),
                 "images": str(tmp_path / "notadir")},
                {"name": "c", "format": "coco", "role": "target", "path": str(tmp_path / "gone.json"),
                 "optional": True}]
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "t", "storage": {"root": str(tmp_path / "runs")}, "datasets": datasets}))
    assert run_mod.main([str(job)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: datasets[a].path {tmp_path / 'missing.json'}: does not exist",
                   f"error: datasets[b].images {tmp_path / 'notadir'}: not a folder"]

    # a storage root that is a file
    assert run_mod.main([str(job), "--set", f"storage.root={tmp_path / 'notadir'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "storage.root" in err[0] and "not a folder" in err[0]


def test_refused_s3_endpoint_is_one_line_without_the_secret(tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "PLANTEDSECRET9876"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setattr(run_mod, "init_ray", lambda cfg: pytest.fail("Ray started"))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "t", "datasets": [], "storage": {
        "root": "s3://bucket/p", "endpoint_url": f"http://127.0.0.1:{port}"}}))
    t0 = time.monotonic()
    try:
        assert run_mod.main([str(job)]) == 2
    finally:
        from annotator import storage

        storage.configure_s3()
    assert time.monotonic() - t0 < 15
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "storage.root s3://bucket/p" in err[0]
    assert secret not in captured.err + captured.out


# --------------------------------------------------------------------------- 5. secrets and Ray logs
@pytest.mark.slow  # one fresh local Ray: about a minute on a busy 2-core machine
def test_secret_never_reaches_the_ray_session_folder(tmp_path, real_fixtures):
    """A manifest-only job on a fresh local Ray with a planted AWS secret (and the opt-in that
    hands it to the workers): no file under the Ray session folder contains it."""
    secret = "SECRETSECRET123XYZ"
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are limited
    job = {"name": "t", "storage": {"root": str(tmp_path / "runs"), "pass_credentials": True},
           "datasets": [{"name": "coco", "format": "coco", "role": "target",
                         "path": str(real_fixtures / "coco" / "test_coco.json")}],
           "steps": ["manifest"]}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    script = f"""
import json, os, ray
from annotator.config import load_job
from annotator.run import run_job
from annotator import storage
summary = run_job(load_job({str(tmp_path / 'job.yaml')!r}))
creds = ray.get(ray.remote(num_cpus=0)(storage.shared_credentials).remote())
print("RESULT", json.dumps({{"rows": summary["manifest"]["outputs"]["datasets"]["coco"]["rows"],
    "worker_got_secret": (creds or {{}}).get("secret") == os.environ["AWS_SECRET_ACCESS_KEY"],
    "session": ray._private.worker._global_node.get_session_dir_path(),
    "own_address": os.environ.get("RAY_ADDRESS") is None}}))
ray.shutdown()
"""
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": "AKIDPLANTED",
           "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run([PY, "-c", script], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
        res = json.loads(line[len("RESULT "):])
        assert res["rows"] == 12 and res["worker_got_secret"]
        assert secret not in proc.stdout + proc.stderr
        session = Path(res["session"])
        assert session.is_dir() and str(session).startswith(ray_tmp)
        leaked, scanned = [], 0
        for path in session.rglob("*"):
            if path.is_file() and not path.is_symlink():
                scanned += 1
                try:
                    if secret.encode() in path.read_bytes():
                        leaked.append(str(path))
                except OSError:
                    pass
        assert scanned > 10, "the Ray session folder should hold logs"
        assert leaked == []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_worker_env_holds_no_secret(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "t0ken-value")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    env = run_mod._worker_env(_job(Path("/tmp")))
    assert "s3cr3t-value" not in env.values() and "t0ken-value" not in env.values()
    assert not {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"} & set(env)
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9" and env["ANNOTATOR_MAX_IMAGE_PIXELS"] == "50000000"


# --------------------------------------------------------------------------- 6-9. hostile images
def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header says width x height (a few hundred bytes: a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _scene(w: int = 40, h: int = 60) -> Image.Image:
    """An upright (displayed-frame) picture: grey, a red block near the bottom left."""
    arr = np.full((h, w, 3), 90, np.uint8)
    arr[40:56, 4:16] = (230, 20, 20)
    arr[5:12, 25:36] = (20, 20, 230)
    return Image.fromarray(arr)


def _exif_rotated(path: Path, upright: Image.Image, orientation: int = 6) -> None:
    """Store ``upright`` the way a camera does: raw pixels rotated, EXIF orientation telling viewers to undo it."""
    raw = upright.transpose(Image.Transpose.ROTATE_90)  # exif_transpose(6) = ROTATE_270 undoes this
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw.save(path, "JPEG", quality=98, exif=exif.tobytes())


def test_image_limits_fifo_empty_and_timeout(tmp_path, monkeypatch):
    from annotator.data import images as images_mod
    from annotator.data.images import ImageReadError, image_size, load_crops

    _png_header(tmp_path / "bomb.png", 30000, 30000)
    _png_header(tmp_path / "big.png", 12000, 12000)
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    t0 = time.monotonic()
    for name, reason, text in (("bomb.png", "image_too_large", "pixels"), ("big.png", "image_too_large", "12000x12000"),
                               ("fifo.jpg", "corrupt_image", "not a regular file"),
                               ("empty.jpg", "corrupt_image", "empty file")):
        with pytest.raises(ImageReadError) as err:
            image_size(str(tmp_path / name), max_pixels=50_000_000)
        assert err.value.reason == reason and text in str(err.value) and name in str(err.value)
    # at decode time the same, from the header (a 144-megapixel decode never starts)
    paths = [str(tmp_path / n) for n in ("bomb.png", "big.png", "fifo.jpg", "empty.jpg")]
    crops = load_crops(paths, np.tile([[1.0, 1.0, 50.0, 50.0]], (4, 1)), 32, 1.2)
    assert crops.reasons == ["image_too_large", "image_too_large", "corrupt_image", "corrupt_image"]
    assert "empty file" in crops.errors[3] and "empty.jpg" in crops.errors[3]
    assert time.monotonic() - t0 < 20
    # the decode-time limit follows the job's manifest.max_image_pixels (set by the driver)
    _scene().save(tmp_path / "s.png")
    monkeypatch.setenv("ANNOTATOR_MAX_IMAGE_PIXELS", "100")
    assert load_crops([str(tmp_path / "s.png")], np.array([[1.0, 1, 20, 20]]), 32, 1.2).reasons == ["image_too_large"]
    # a read that stalls is given up after the timeout
    monkeypatch.setattr(images_mod, "READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr(images_mod, "_open_local", lambda p: time.sleep(5))
    t0 = time.monotonic()
    with pytest.raises(ImageReadError, match="timed out"):
        image_size(str(tmp_path / "s.png"))
    assert time.monotonic() - t0 < 3


def test_exif_orientation_is_applied_at_header_and_decode_time(tmp_path):
    from annotator.data.images import image_size, load_crops

    upright = _scene()
    upright.save(tmp_path / "upright.jpg", "JPEG", quality=98)
    _exif_rotated(tmp_path / "rotated.jpg", upright)
    assert Image.open(tmp_path / "rotated.jpg").size == (60, 40)  # stored sideways
    assert image_size(str(tmp_path / "rotated.jpg")) == (40, 60)  # as displayed (and annotated)
    box = np.array([[2.0, 36.0, 16.0, 22.0], [0.0, 0.0, 40.0, 60.0]])
    ref = load_crops([str(tmp_path / "upright.jpg")] * 2, box, 32, 1.2)
    got = load_crops([str(tmp_path / "rotated.jpg")] * 2, box, 32, 1.2)
    assert got.ok.all() and got.image_size.tolist() == [[40, 60], [40, 60]]
    diff = np.abs(got.images.astype(int) - ref.images.astype(int)).mean()
    assert diff < 6, diff  # same crop as the upright file (JPEG noise only)
    red = got.images[0, 0].astype(int) - got.images[0, 2].astype(int)
    assert red[8:24, 8:24].mean() > 100  # the red block is where the annotation says


# --------------------------------------------------------------------------- the hostile folder
KP = [v for k in range(17) for v in (8.0 + k, 10.0 + 2 * k, 2)]


def test_manifest_over_a_folder_of_hostile_files(tmp_path):
    """Good images and every hostile file in one COCO dataset: rows + rejects = instances,
    every reject with its reason, in bounded time, through the ``annotator manifest`` command."""
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    _scene().save(outside / "secret.jpg")
    _scene().save(images / "good.jpg")
    _scene().save(images / "good2.png")
    _png_header(images / "bomb.png", 30000, 30000)
    _png_header(images / "big.png", 12000, 12000)
    os.mkfifo(images / "x.jpg")
    (images / "empty.jpg").write_bytes(b"")
    data = (images / "good.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    _exif_rotated(images / "exif.jpg", _scene())
    _exif_rotated(images / "exif0.jpg", _scene())
    (images / "link.jpg").symlink_to(outside / "secret.jpg")
    (images / "sub").mkdir()
    ims = [  # id, file name, width, height (0: from the header)
        (1, "good.jpg", 40, 60), (2, "good2.png", 0, 0), (3, "bomb.png", 0, 0), (4, "big.png", 12000, 12000),
        (5, "x.jpg", 0, 0), (6, "../../outside/secret.jpg", 0, 0), (7, str(outside / "secret.jpg"), 0, 0),
        (8, "/etc/passwd", 0, 0), (9, "empty.jpg", 0, 0), (10, "truncated.jpg", 40, 60), (11, "exif.jpg", 40, 60),
        (12, "exif0.jpg", 0, 0), (13, "link.jpg", 0, 0), (14, "sub", 0, 0), (15, "good.jpg", 40, 60),
        (15, "good2.png", 40, 60), (16, "sub/../good.jpg", 40, 60)]
    images_json = [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in ims]
    anns = [{"id": 100 + i, "image_id": i, "category_id": 1, "iscrowd": 0, "bbox": [2.0, 4.0, 34.0, 50.0],
             "keypoints": KP, "num_keypoints": 17} for i in sorted({i for i, *_ in ims})]
    nan_vis = list(KP)
    nan_vis[2] = float("nan")
    anns += [{"id": 200, "image_id": 1, "category_id": 1, "bbox": [2.0, 4.0, 34.0, 50.0], "keypoints": nan_vis},
             {"id": None, "image_id": 1, "category_id": 1, "bbox": [2.0, 4.0, 34.0, 50.0], "keypoints": KP},
             {"id": [1, 2], "image_id": 1, "category_id": 1, "bbox": [2.0, 4.0, 34.0, 50.0], "keypoints": KP},
             {"id": {"a": 1}, "image_id": 1, "category_id": 1, "bbox": [2.0, 4.0, 34.0, 50.0], "keypoints": KP},
             {"id": 201, "image_id": [1], "category_id": 1, "bbox": [2.0, 4.0, 34.0, 50.0], "keypoints": KP}]
    ann_file = tmp_path / "data" / "ann.json"
    ann_file.write_text(json.dumps({"images": images_json, "annotations": anns,
                                    "categories": [{"id": 1, "name": "person", "keypoints": ["k"] * 17}]}))
    out = tmp_path / "run" / "manifest" / "hostile"
    t0 = time.monotonic()
    proc = subprocess.run([PY, "-m", "annotator.cli", "manifest", "--format", "coco", "--path", str(ann_file),
                           "--images", str(images), "--name", "hostile", "--out", str(out), "--min-visible-keypoints", "4"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - t0 < 120
    assert "Traceback" not in proc.stderr
    info = json.loads(proc.stdout)
    import pyarrow.parquet as pq

    rows = pq.read_table(sorted(out.glob("part-*.parquet"))).to_pandas()
    rej = pq.read_table(sorted((tmp_path / "run" / "rejects" / "hostile").glob("part-*.parquet"))).to_pandas()
    assert info["input_count"] == len(anns) == len(rows) + len(rej)
    reasons = dict(zip(rej.sample_id, rej.reason))
    assert all(rej.detail.str.len() > 0)
    expect = {"hostile/103": "image_too_large", "hostile/104": "image_too_large", "hostile/105": "corrupt_image",
              "hostile/106": "path_outside_images", "hostile/107": "path_outside_images",
              "hostile/108": "path_outside_images", "hostile/109": "corrupt_image",
              "hostile/113": "path_outside_images", "hostile/114": "corrupt_image", "hostile/115": "duplicate_id",
              "hostile/200": "non_finite", "hostile/annotations[17]": "invalid_value",
              "hostile/annotations[18]": "invalid_value", "hostile/annotations[19]": "invalid_value",
              "hostile/201": "unknown_image"}
    assert {k: reasons.get(k) for k in expect} == expect
    assert set(rows.sample_id) >= {"hostile/101", "hostile/102", "hostile/111", "hostile/112", "hostile/116"}
    assert set(rows.sample_id) | set(reasons) == {f"hostile/{a['id']}" if isinstance(a["id"], int)
                                                 else f"hostile/annotations[{k}]" for k, a in enumerate(anns)}
    sizes = rows.set_index("sample_id")[["image_width", "image_height"]]
    assert sizes.loc["hostile/112"].tolist() == [40, 60]  # EXIF-rotated, size from the header as displayed
    detail = dict(zip(rej.sample_id, rej.detail))
    assert "empty.jpg" in detail["hostile/109"] and "LocalFileOpener" not in detail["hostile/109"]
    assert "passwd" not in "".join(rej[rej.reason != "path_outside_images"].detail)


def test_mpii_scale_zero_or_negative_is_a_reject(tmp_path, real_fixtures):
    from annotator.config import DatasetConfig, ManifestConfig
    from annotator.data import build_manifest
    from annotator.data.manifest import read_rejects

    src = real_fixtures / "mpii"
    data = json.loads((src / "test_mpii.json").read_text())
    data[0]["scale"], data[1]["scale"] = 0, -1.5
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    ds = DatasetConfig(name="m", format="mpii_json", role="target", path=str(path), images=str(src))
    info = build_manifest(ds, ManifestConfig(), str(tmp_path / "manifest"), str(tmp_path / "rejects"))
    rej = read_rejects(str(tmp_path / "rejects")).to_pandas()
    bad = rej[rej.detail.str.contains("scale")]
    assert len(bad) == 2 and set(bad.reason) == {"invalid_value"}
    assert info.input_count == info.num_rows + info.rejects_count == len(data)
