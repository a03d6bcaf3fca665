"""`ray job submit --working-dir . -- python -m annotator.run JOB` against a local head node.

The head runs in its own process group and only that group is stopped afterwards
(`ray stop` would stop every Ray on the machine, including other tests' clusters)."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_pipeline import ROOT, _free_port, read_dir, write_job


def _wait_for_dashboard(url: str, token: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    t0 = time.monotonic()
    request = urllib.request.Request(url + "/api/version", headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited early: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"no Ray dashboard at {url} after {timeout_s} s")


@pytest.mark.slow
def test_ray_job_submit_to_a_local_head(tmp_path):
    # Ray's dashboard (job submission) requires a token; head and client share this one
    token = secrets.token_hex(16)
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).parent / "ray")
    port, dash = _free_port(), _free_port()
    ray_tmp = tempfile.mkdtemp(prefix="rj-", dir="/tmp")  # Unix socket paths must stay short
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}", "--num-cpus=2",
         "--include-dashboard=true", "--disable-usage-stats", f"--temp-dir={ray_tmp}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_dashboard(f"http://127.0.0.1:{dash}", token, head)
        job = write_job(tmp_path, str(tmp_path / "runs"), steps=["manifest", "train-pose-prior", "pretrain", "predict-prior"])
        proc = subprocess.run(
            [ray_bin, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(ROOT),
             "--", sys.executable, "-m", "annotator.run", str(job)],
            env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "predict-prior" in proc.stdout and "succeeded" in proc.stdout
        prior = read_dir(tmp_path / "runs" / "tiny" / "prior" / "wild")
        manifest = read_dir(tmp_path / "runs" / "tiny" / "manifest" / "wild")
        assert sorted(prior.sample_id) == sorted(manifest.sample_id)
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(ray_tmp, ignore_errors=True)
