"""Score a bench quality run's `wild` pseudo-GT on the people of its first N images only.

    python benchmarks/subset_scores.py WORK_DIR SEED FIRST_IMAGES [METHOD ...]

The synthetic world draws every image from its own seed (``(seed, domain, index)``), so image
``i`` of a `wild` set is the same whatever the set's size: the first 150 images of an
``annotator bench quality --wild-images 600`` run are exactly the `wild` set of the default
(150-image) run of the same seed. This scores each method of the larger run (default: cliff,
prior, smplify) and ``baseline-mean-pose`` (the report's own reference, from the run's aux3d
rows) on those people with the report's own error code, so a run with more target images can
be read against the default run's table person for person. Prints a markdown table.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from annotator.bench.quality import QualitySettings, bench_job
from annotator.config import parse_job
from annotator.evaluation.reports import baseline_predictions, direct_errors, mean_aux3d_pose, read_parquet_file, skill
from error_decomposition import load_run


def main(work_dir: str, seed: int, first_images: int, methods: list[str]) -> None:
    run = load_run(work_dir, seed)
    bench_cfg = parse_job(bench_job(QualitySettings(seed=seed), run.root, "base"))  # its dataset roles
    gt_file = read_parquet_file(run.manifest["datasets"]["wild"]["ground_truth"], ["annotation_id", "image_id"])
    image_of = pd.Series(gt_file["image_id"].values, index="wild/" + gt_file["annotation_id"].astype(str))
    keep = image_of.index[image_of.values <= first_images]  # image ids count from 1
    rows, scored = {}, None
    for method in methods:
        pred, gt = run.pseudo_gt(method)
        ids = pred.index.intersection(keep)
        scored = ids if scored is None else scored.intersection(ids)
        err = direct_errors(pred.loc[ids], gt.loc[ids], run.body)
        rows[method] = {"n": len(ids), "err2d_px": float(np.nanmean(pred.loc[ids, "err2d_px"])),
                        "mpjpe": float(err.mpjpe.mean()), "pa_mpjpe": float(err.pa_mpjpe.mean()),
                        "orient_median_deg": float(err.orient_err_deg.median())}
    g = run.truth.loc[scored]  # the people every method scored
    base = direct_errors(baseline_predictions(g, mean_aux3d_pose(bench_cfg, run.manifest)), g, run.body)
    baseline = {"n": len(scored), "mpjpe": float(base.mpjpe.mean()), "pa_mpjpe": float(base.pa_mpjpe.mean())}
    print(f"`wild` people of images 1-{first_images} ({work_dir}, seed {seed})\n")
    print("| method | people | 2D px | MPJPE | PA-MPJPE | skill | orient. median |")
    print("|---|---|---|---|---|---|---|")
    for method, r in rows.items():
        print(f"| {method} | {r['n']} | {r['err2d_px']:.1f} | {r['mpjpe']:.1f} | {r['pa_mpjpe']:.1f} | "
              f"{skill(r, baseline):+.2f} | {r['orient_median_deg']:.1f} |")
    print(f"| baseline-mean-pose | {baseline['n']} | - | {baseline['mpjpe']:.1f} | {baseline['pa_mpjpe']:.1f} | 0 | 0 |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:] or ["cliff", "prior", "smplify"])
