"""Benchmarks of the production paths (``annotator bench ...``).

:mod:`annotator.bench.throughput` (``BenchSettings``, ``run_bench``) measures the
batch-inference pipeline end to end against the bare model, actor scaling, memory
flatness with manifest size, image decode and finetune step throughput, and reports them
as ratios measured in one run. Nothing is imported here, so ``annotator --help`` stays
fast (torch and Ray load only when a bench runs).
"""
