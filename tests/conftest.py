"""Shared test fixtures. The open body model is built once into the project cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ANNOTATOR_CACHE_DIR", str(ROOT / ".cache" / "annotator"))
os.environ.setdefault("ANNY_CACHE_DIR", str(Path(os.environ["ANNOTATOR_CACHE_DIR"]) / "anny"))

FIXTURES = ROOT.parent / "shared" / "fixtures" / "real"


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    if not FIXTURES.exists():
        pytest.fail(f"real fixtures not found at {FIXTURES} (expected ../shared beside the checkout)")
    return FIXTURES


@pytest.fixture(scope="session")
def body_model():
    """The default (open, anny-built) body model through the product's own loader."""
    from annotator.body import load_body_model
    from annotator.config import BodyModelConfig

    return load_body_model(BodyModelConfig())
