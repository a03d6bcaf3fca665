"""benchmarks/gpu_check.py in its tiny CPU mode: every section runs and reports numbers.

The real check needs a CUDA machine (README "GPU check"); this only proves the code paths,
the JSON layout and that nothing in them imports Ray. It uses the body model of
``.gpucheck/`` when prepared, else the project cache (the ``body_model`` fixture builds it),
and needs neither the ``.whl`` folder nor a GPU.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

#: section -> keys that must hold a finite number
NUMBERS = {
    "train": ["samples_per_s"],
    "infer": ["samples_per_s"],
    "smplify": ["people_per_s", "seconds", "err2d_px_median"],
    "body_model": ["ms_batch_1", "ms_batch_4"],
    "decode": ["crops_per_s"],
}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_gpu_check_tiny_cpu(tmp_path, body_model):  # body_model: the open model is built before the subprocess needs it
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--threads", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == ["gpu_check.json"], files  # one file, no leftovers
    result = json.loads(files[0].read_text())
    assert result["complete"] is True
    assert result["meta"]["ray_imported"] is False
    assert set(result["sections"]) == set(NUMBERS)
    for name, keys in NUMBERS.items():
        sec = result["sections"][name]
        assert sec["ok"], (name, sec.get("error"), sec.get("traceback"))
        for key in keys:
            assert _finite(sec[key]) and sec[key] > 0, (name, key, sec[key])
    train = result["sections"]["train"]["by_batch"]["2"]
    assert train["loss_finite"] and _finite(train["ms_per_step"])
    dec = result["sections"]["decode"]
    assert _finite(dec["cpu"]["crops_per_s"]) and _finite(dec["device"]["crops_per_s"])
    assert dec["cpu_vs_device_mean_abs_diff"] < 20  # same crop from both paths (uint8 levels)
    assert result["elapsed_s"] < 60


def test_gpu_check_failing_section_still_writes_json(tmp_path):
    """A section that fails is recorded with its error; the others and the JSON remain."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--threads", "1",
                           "--sections", "smplify,decode", "--body-model", str(tmp_path / "missing.pkl"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["complete"] is True
    assert not result["sections"]["smplify"]["ok"] and "does not exist" in result["sections"]["smplify"]["error"]
    assert result["sections"]["decode"]["ok"] and _finite(result["sections"]["decode"]["crops_per_s"])
