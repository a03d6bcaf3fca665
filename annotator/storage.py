"""The one storage layer: every read and write of the product goes through here.

Paths are plain local paths or URLs (``s3://bucket/key``). fsspec resolves the
filesystem; for ``s3://`` the endpoint/region come from the job config or the standard
AWS environment/config chain (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).
Credentials are never put into messages: :func:`redact` strips them from any URL.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import uuid
from typing import Any, Iterator

import fsspec

_S3_OPTIONS: dict[str, Any] = {}


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (checksums of model files and exports)."""
    return hashlib.sha256(data).hexdigest()


def configure_s3(endpoint_url: str | None = None, region: str | None = None) -> None:
    """Set process-wide S3 options from the job config (call once per process)."""
    _S3_OPTIONS.clear()
    client_kwargs = {}
    if endpoint_url:
        client_kwargs["endpoint_url"] = endpoint_url
    if region:
        client_kwargs["region_name"] = region
    if client_kwargs:
        _S3_OPTIONS["client_kwargs"] = client_kwargs
    fsspec.config.conf.pop("s3", None)
    _FS_CACHE.clear()


def s3_options() -> dict[str, Any]:
    return dict(_S3_OPTIONS)


def is_remote(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


_FS_CACHE: dict[str, fsspec.AbstractFileSystem] = {}


def filesystem(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(fs, path_within_fs)`` for a local path or URL."""
    path = str(path)
    protocol = path.split("://", 1)[0] if "://" in path else "file"
    if protocol == "file":
        fs = _FS_CACHE.setdefault("file", fsspec.filesystem("file"))
        local = path[len("file://"):] if path.startswith("file://") else path
        return fs, os.path.abspath(os.path.expanduser(local))
    if protocol not in _FS_CACHE:
        opts = s3_options() if protocol in ("s3", "s3a") else {}
        if protocol in ("s3", "s3a") and (creds := shared_credentials()):
            opts.update(creds)
        _FS_CACHE[protocol] = fsspec.filesystem(protocol, **opts)
    return _FS_CACHE[protocol], path.split("://", 1)[1]


def join(base: str, *parts: str) -> str:
    out = str(base).rstrip("/")
    for p in parts:
        out = out + "/" + str(p).strip("/")
    return out


def exists(path: str) -> bool:
    fs, p = filesystem(path)
    return fs.exists(p)


def makedirs(path: str) -> None:
    fs, p = filesystem(path)
    if not is_remote(path):
        fs.makedirs(p, exist_ok=True)


def listdir(path: str, suffix: str = "") -> list[str]:
    """Sorted full paths/URLs of the files directly under ``path`` ending in ``suffix``."""
    fs, p = filesystem(path)
    if not fs.exists(p):
        return []
    names = sorted(fs.ls(p, detail=False))
    prefix = path.split("://", 1)[0] + "://" if is_remote(path) else ""
    return [prefix + n for n in names if n.endswith(suffix) and not os.path.basename(n).startswith(".")]


def open_file(path: str, mode: str = "rb"):
    fs, p = filesystem(path)
    return fs.open(p, mode)


def read_bytes(path: str) -> bytes:
    fs, p = filesystem(path)
    return fs.cat_file(p)


def read_json(path: str) -> Any:
    with open_file(path, "rb") as fh:
        return json.load(fh)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write a whole file so readers never see a partial one.

    Local: write a temp file next to it and rename. Object stores: a single PUT is
    already atomic for readers.
    """
    fs, p = filesystem(path)
    if is_remote(path):
        fs.pipe_file(p, data)
        return
    os.makedirs(os.path.dirname(p), exist_ok=True)
    tmp = os.path.join(os.path.dirname(p), f".tmp-{uuid.uuid4().hex}-{os.path.basename(p)}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)


def write_json_atomic(path: str, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


@contextlib.contextmanager
def atomic_writer(path: str) -> Iterator[io.BytesIO]:
    """``with atomic_writer(p) as fh: fh.write(...)`` - buffered, committed on success only."""
    buf = io.BytesIO()
    yield buf
    write_bytes_atomic(path, buf.getvalue())


def remove(path: str, recursive: bool = False) -> None:
    fs, p = filesystem(path)
    if fs.exists(p):
        fs.rm(p, recursive=recursive)


def local_path(path: str) -> str:
    """Absolute local path for a local path or file:// URL; error for remote URLs."""
    if is_remote(path):
        raise ValueError(f"{redact(path)}: expected a local path")
    return filesystem(path)[1]


def pyarrow_filesystem(path: str):
    """``(pyarrow.fs.FileSystem, path)`` for Parquet I/O (via fsspec, so options match)."""
    import pyarrow.fs as pafs

    fs, p = filesystem(path)
    if not is_remote(path):
        return pafs.LocalFileSystem(), p
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), p


# ----------------------------------------------------------------------------- credentials
#: Name of the job's Ray actor that holds the driver's AWS credentials (``storage.pass_credentials``).
CREDENTIALS_ACTOR = "annotator-aws-credentials"
_CREDENTIALS_HANDLE = None
_CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}


def share_credentials_with_workers() -> bool:
    """Driver, after Ray started: hand the AWS credentials of this process's environment to
    the job's workers through a named actor of the job (the value travels through the object
    store, never through ``runtime_env``, a task's arguments or a log). False if there are none."""
    import ray

    creds = {opt: os.environ[var] for var, opt in _CREDENTIAL_ENV.items() if os.environ.get(var)}
    if not creds:
        return False

    @ray.remote(num_cpus=0)
    class _Credentials:
        def __init__(self):
            self.value = None

        def put(self, value):
            self.value = value

        def get(self):
            return self.value

    global _CREDENTIALS_HANDLE
    actor = _Credentials.options(name=CREDENTIALS_ACTOR, get_if_exists=True).remote()
    ray.get(actor.put.remote(ray.put(creds)))
    _CREDENTIALS_HANDLE = actor  # a Ray actor lives while the driver holds a handle to it
    return True


def shared_credentials() -> dict[str, str] | None:
    """In a Ray worker of a job that shares credentials: ``{key, secret[, token]}``; else None
    (the worker's own AWS credential chain is used)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    try:
        actor = ray.get_actor(CREDENTIALS_ACTOR)
    except ValueError:
        return None
    return ray.get(actor.get.remote(), timeout=60)


_SECRET_RE = re.compile(r"(?i)(aws_secret_access_key|aws_session_token|secret|token|password)=([^&\s]+)")
_USERINFO_RE = re.compile(r"://[^/@\s]+@")


def redact(text: str) -> str:
    """Strip credentials (URL user-info, secret query params, env secrets) from a message."""
    text = _USERINFO_RE.sub("://***@", str(text))
    text = _SECRET_RE.sub(lambda m: f"{m.group(1)}=***", text)
    for var in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        val = os.environ.get(var)
        if val and len(val) >= 4:
            text = text.replace(val, "***")
    return text
