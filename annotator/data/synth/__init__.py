"""The synthetic world: people rendered with the body model, written in real dataset formats.

``wild`` (COCO keypoints JSON, 2D only), ``lab`` and ``wild3d`` (SPIN-style npz with 3D
truth), plus an evaluation-only ``ground_truth.parquet`` for every domain. See
:mod:`.pipeline` (entry point and layout), :mod:`.scene` (domains, cameras, placement,
visibility), :mod:`.poses` (joint limits, archetypes), :mod:`.raster` (CPU z-buffer),
:mod:`.writers` (byte-deterministic files), :mod:`.contact_sheet`, :mod:`.bench`.
CLI: ``annotator synth`` (:mod:`.cli`).
"""
from annotator.data.synth.pipeline import (GT_FILE, SUMMARY_FILE, SynthResult, annotation_path, annotation_relpath,
                                           dataset_config, generate, generate_from_config)

__all__ = ["GT_FILE", "SUMMARY_FILE", "SynthResult", "annotation_path", "annotation_relpath", "dataset_config",
           "generate", "generate_from_config"]
