"""Datasets in, sharded manifests out; image access for the model side.

Public entry points: :func:`build_manifest`, :func:`read_manifest`,
:func:`manifest_shards`, :func:`write_manifest` and :func:`annotator.data.images.load_crops`.
"""
from __future__ import annotations

from annotator.data.adapters import build_manifest
from annotator.data.manifest import (MANIFEST_SCHEMA, REJECTS_SCHEMA, SCHEMA_VERSION, ManifestError, ManifestInfo,
                                     manifest_shards, read_manifest, read_rejects, write_manifest)

__all__ = ["MANIFEST_SCHEMA", "REJECTS_SCHEMA", "SCHEMA_VERSION", "ManifestError", "ManifestInfo", "build_manifest",
           "manifest_shards", "read_manifest", "read_rejects", "write_manifest"]
