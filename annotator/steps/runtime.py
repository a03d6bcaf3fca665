"""Runtime helpers shared by the Ray-executed steps: device choice, model/body loading,
and the Ray Data reader of manifest shards. The math lives in annotator.model/geometry."""
from __future__ import annotations

import io
import logging
import os
import pickle

import torch

from annotator import storage
from annotator.config import BodyModelConfig, JobConfig
from annotator.layout import RunLayout


def worker_config(job_json: str) -> JobConfig:
    """The job config inside a Ray worker, with the process set up for it (S3 options)."""
    cfg = JobConfig.model_validate_json(job_json)
    storage.configure_s3(cfg.storage.endpoint_url, cfg.storage.region)
    return cfg


def pick_device(cfg: JobConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda requested but no CUDA device is visible to this worker")
        return torch.device("cuda")
    return torch.device("cpu")


def autocast(cfg: JobConfig, device: torch.device):
    """AMP on CUDA (bf16 where supported, else fp16); a no-op context on CPU."""
    enabled = cfg.amp and device.type == "cuda"
    dtype = torch.bfloat16 if enabled and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def run_body_model_config(cfg: JobConfig, body_model_path: str | None) -> BodyModelConfig:
    """The body model every worker loads: the run's own copy (same file on every node)."""
    if body_model_path is None:
        return cfg.body_model
    return cfg.body_model.model_copy(update={"path": body_model_path})


def load_run_body_model(layout: RunLayout, device: str | torch.device = "cpu"):
    """The run's own body model, whatever its kind: the copy at :meth:`RunLayout.body_model`,
    loaded as its record (:meth:`RunLayout.body_model_record`, written by the manifest step) says.
    Runs made before the record existed load it as the open model with 10 betas."""
    from annotator.body import load_body_model

    path, record_path = layout.body_model(), layout.body_model_record()
    if not storage.exists(path):
        raise FileNotFoundError(f"{storage.redact(path)}: the run's body model is missing")
    record = storage.read_json(record_path) if storage.exists(record_path) else {}
    cfg = BodyModelConfig(kind=record.get("kind", "open"), path=path, num_betas=record.get("num_betas", 10))
    body = load_body_model(cfg, device)
    if record.get("checksum") not in (None, body.checksum):
        raise ValueError(f"{storage.redact(path)}: checksum {body.checksum[:12]}... differs from the "
                         f"{record['checksum'][:12]}... recorded in {storage.redact(record_path)}")
    return body


def load_network(cfg: JobConfig, weights_path: str | None, device: torch.device, joints_in: int | None = None):
    """A CliffNet with weights from a checkpoint file written by a training step. ``joints_in``:
    the aux-set annotator's 3D-joints input (``TRAIN_CONVENTION`` joints); None: whatever the
    checkpoint has (0 without one)."""
    from annotator.body.joints import TRAIN_CONVENTION, get_convention
    from annotator.model import CliffNet, load_weights
    from annotator.model.cliff import checkpoint_joints_in, read_state_dict

    state = read_state_dict(weights_path) if weights_path else None  # read once: the checkpoint may be on S3
    if joints_in is None:
        joints_in = checkpoint_joints_in(state) if state is not None else 0
    net = CliffNet(cfg.network, cfg.crop.size, num_betas=cfg.body_model.num_betas, joints_in=joints_in,
                   joints_root=get_convention(TRAIN_CONVENTION).root)
    if state is not None:
        load_weights(net, weights_path, state=state)
    net = net.to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return net


def save_torch(obj, path: str) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    storage.write_bytes_atomic(path, buf.getvalue())


class UnsafeCheckpointError(ValueError):
    """A torch file that does not load with ``weights_only=True`` (it would run code): refused."""


def load_torch(path: str, warn: bool = True):
    """A checkpoint written by :func:`save_torch` (tensors, dicts, lists, numbers, strings),
    loaded with ``weights_only=True``: a file whose pickle would import or call anything else
    is refused (:class:`UnsafeCheckpointError`, logged), never run."""
    raw = storage.read_bytes(path)
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "Unsupported" in ln or "WeightsUnpickler" in ln), lines[0] if lines else "?")
        msg = (f"{storage.redact(path)}: refused: not a plain-tensor checkpoint, it does not load with "
               f"weights_only=True ({why[:200]})")
        if warn:
            logging.getLogger("annotator").warning("%s", msg)
        raise UnsafeCheckpointError(msg) from None


def dense_list_columns(table):
    """Arrow block -> the same block with no null list values, so that Ray Data hands every
    list column over the same way whatever the dataset (``batch_format="numpy"``).

    Manifests of different adapters mix in one Ray Dataset: a list column that is null in
    one shard (``visibility`` of MPII/SPIN, ``joints_3d`` of COCO) and filled in another
    would reach Ray as a Python-object column in one block and a tensor column in the next,
    which Ray Data refuses to concatenate ("Found columns with both objects and tensors").
    Null rows become an empty list (variable lists) or NaN values (fixed-size lists); both
    read back as "not present" in :func:`annotator.data.batching.stack_list_column`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        typ = field.type
        col = table.column(i)
        if not col.null_count:
            continue
        if pa.types.is_fixed_size_list(typ) and pa.types.is_floating(typ.value_type):
            fill = pa.scalar([float("nan")] * typ.list_size, type=typ)
        elif pa.types.is_list(typ) or pa.types.is_large_list(typ):
            fill = pa.scalar([], type=typ)
        else:
            continue
        table = table.set_column(i, field.with_nullable(False), pc.fill_null(col, fill))
    return table


def read_manifest_dataset(shards: list[str], include_paths: bool = True):
    """Ray Dataset over manifest shard files (streamed; nothing is materialised); list
    columns come without nulls (:func:`dense_list_columns`), so datasets of any format and
    joint convention mix in one Dataset."""
    import ray.data

    fs, _ = storage.pyarrow_filesystem(shards[0])
    paths = [storage.filesystem(s)[1] for s in shards]
    ds = ray.data.read_parquet(paths, filesystem=fs, include_paths=include_paths,
                               override_num_blocks=max(1, len(paths)))
    return ds.map_batches(dense_list_columns, batch_format="pyarrow", batch_size=None, zero_copy_batch=True)


def shard_name(path: str) -> str:
    return os.path.basename(str(path))
