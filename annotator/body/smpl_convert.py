"""Reading SMPL-format pickles safely, and converting chumpy-based SMPL files.

The official SMPL pickles (``SMPL_NEUTRAL.pkl`` ...) were written with Python 2 and store
some arrays as ``chumpy.ch.Ch`` objects. chumpy is unmaintained and does not install on
current Python/numpy, so the product never imports it:

* :func:`load_smpl_dict` reads a chumpy-free pickle with a *restricted* unpickler (only
  numpy arrays/dtypes, scipy sparse matrices and plain containers may appear) and raises
  :class:`ChumpyPickleError` with the conversion command if the file still holds chumpy
  objects.
* :func:`convert_smpl` (``annotator body convert-smpl IN OUT``) unpickles such a file with a
  shim standing in for every chumpy class, recovers each ``Ch`` value from its pickled
  ``__dict__`` (chumpy stores the array under ``x``) and writes a pickle of plain numpy
  arrays that ``smplx.SMPL(model_path=...)`` reads.
"""
from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

import numpy as np

from annotator import storage

CONVERT_HINT = "annotator body convert-smpl {path} <OUT.pkl>"

# Globals a SMPL pickle may legitimately reference: (module prefix, allowed names).
# numpy 1.x pickles name ``numpy.core.multiarray``; numpy 2 moved it to ``numpy._core``.
_NUMPY_NAMES = {"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer"}
_BUILTIN_NAMES = {"set", "frozenset", "slice", "complex", "object", "bytearray"}
_COPYREG_NAMES = {"_reconstructor"}
_SPARSE_SUFFIXES = ("_matrix", "_array")


class ChumpyPickleError(ValueError):
    """The pickle contains chumpy objects: it must be converted first."""


class _ChumpyShim:
    """Stand-in for any chumpy class: keeps the pickled state so the array can be recovered."""

    def __init__(self, *args, **kwargs) -> None:  # NEWOBJ may pass constructor args
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slotstate)
            state = state[0]
        self.__dict__["_state"] = state if isinstance(state, dict) else {"x": state}


def _resolve_numpy(module: str, name: str):
    candidates = [module]
    if module.startswith("numpy.core"):
        candidates.insert(0, "numpy._core" + module[len("numpy.core"):])
    for mod in candidates:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy/scipy-sparse data; chumpy handled per ``chumpy_shim``."""

    def __init__(self, fh, path: str, chumpy_shim: bool) -> None:
        super().__init__(fh, encoding="latin1")
        self._path = path
        self._chumpy_shim = chumpy_shim

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            if not self._chumpy_shim:
                raise ChumpyPickleError(
                    f"{storage.redact(self._path)}: this SMPL file contains chumpy objects "
                    f"({module}.{name}); convert it once with "
                    f"`{CONVERT_HINT.format(path=storage.redact(self._path))}` and point "
                    "body_model.path at the converted file"
                )
            return _ChumpyShim
        if (module == "numpy" or module.startswith("numpy.")) and name in _NUMPY_NAMES:
            return _resolve_numpy(module, name)
        if module.startswith("scipy.sparse") and name.endswith(_SPARSE_SUFFIXES):
            import scipy.sparse

            return getattr(scipy.sparse, name)
        if module in ("builtins", "__builtin__") and name in _BUILTIN_NAMES:
            return getattr(importlib.import_module("builtins"), name)
        if module in ("copy_reg", "copyreg") and name in _COPYREG_NAMES:
            return getattr(importlib.import_module("copyreg"), name)
        if module == "_codecs" and name == "encode":  # how protocol <= 2 pickles bytes on Python 3
            return getattr(importlib.import_module("_codecs"), name)
        raise pickle.UnpicklingError(
            f"{storage.redact(self._path)}: refusing to load {module}.{name} from a body-model "
            "pickle (only numpy arrays, scipy sparse matrices and plain containers are allowed)"
        )


def _unpickle(data: bytes, path: str, chumpy_shim: bool) -> dict[str, Any]:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), path, chumpy_shim).load()
    except ChumpyPickleError:
        raise
    except Exception as exc:  # corrupt/truncated/foreign pickle
        raise ValueError(f"{storage.redact(path)}: not a readable SMPL-format pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{storage.redact(path)}: expected a dict of model arrays, got {type(obj).__name__}")
    return obj


def load_smpl_dict(path: str, data: bytes | None = None) -> dict[str, Any]:
    """Read a chumpy-free SMPL-format pickle (local or ``s3://``) into a dict.

    Raises :class:`ChumpyPickleError` (with the conversion command) if it holds chumpy objects.
    """
    if data is None:
        data = storage.read_bytes(path)
    return _unpickle(data, path, chumpy_shim=False)


def _plain(value: Any, key: str, path: str) -> Any:
    """Recursively replace chumpy shims by numpy arrays and sparse matrices by dense arrays."""
    if isinstance(value, _ChumpyShim):
        state = value.__dict__.get("_state")
        if not state or "x" not in state:
            raise ValueError(
                f"{storage.redact(path)}: key {key!r} is a chumpy expression without a stored "
                "value ('x'); only plain chumpy arrays can be converted"
            )
        return np.asarray(_plain(state["x"], key, path))
    if hasattr(value, "toarray") and hasattr(value, "nnz"):  # scipy sparse
        return np.asarray(value.toarray())
    if isinstance(value, dict):
        return {k: _plain(v, f"{key}.{k}", path) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, key, path) for v in value)
    return value


def to_plain_smpl_dict(data: bytes, path: str = "<bytes>") -> dict[str, Any]:
    """Unpickle SMPL bytes that may contain chumpy objects into plain numpy arrays."""
    raw = _unpickle(data, path, chumpy_shim=True)
    return {str(k): _plain(v, str(k), path) for k, v in raw.items()}


def dump_pickle(obj: dict[str, Any]) -> bytes:
    """Stable pickle bytes (fixed protocol, no memo surprises): same dict -> same bytes."""
    return pickle.dumps(obj, protocol=4)


def convert_smpl(src: str, dst: str) -> dict[str, tuple]:
    """Convert a (possibly chumpy-based) SMPL pickle at ``src`` into a plain one at ``dst``.

    Returns ``{key: shape}`` of the array entries written.
    """
    plain = to_plain_smpl_dict(storage.read_bytes(src), src)
    missing = [k for k in ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f") if k not in plain]
    if missing:
        raise ValueError(f"{storage.redact(src)}: not an SMPL model file, missing keys {missing}")
    storage.write_bytes_atomic(dst, dump_pickle(plain))
    return {k: tuple(np.shape(v)) for k, v in plain.items() if isinstance(v, np.ndarray)}
