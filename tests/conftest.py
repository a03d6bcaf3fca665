"""Shared test fixtures. The open body model is built once into the project cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ANNOTATOR_CACHE_DIR", str(ROOT / ".cache" / "annotator"))
os.environ.setdefault("ANNY_CACHE_DIR", str(Path(os.environ["ANNOTATOR_CACHE_DIR"]) / "anny"))

FIXTURES = ROOT.parent / "shared" / "fixtures" / "real"


@pytest.fixture()
def single_thread():
    """One intra-op torch thread for the test (small tensors on a shared 2-core machine:
    avoids oversubscription stalls and makes timings and results repeatable)."""
    from annotator.threads import torch_threads

    with torch_threads(1):
        yield


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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on loopback; yields its endpoint URL.

    Credentials are dummies set in the environment, the way a user's AWS chain would."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing-key", AWS_SECRET_ACCESS_KEY="testing-secret-value",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    yield endpoint
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture()
def s3_bucket(s3_server):
    """A fresh bucket on the moto server; yields ``s3://<bucket>``."""
    import uuid

    import boto3

    from annotator import storage

    name = f"test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    storage.configure_s3(endpoint_url=s3_server)
    yield f"s3://{name}"
    storage.configure_s3()
