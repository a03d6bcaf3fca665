"""Peak RSS of reading a COCO-format file (the coco adapter) against the file size.

    python benchmarks/bench_coco_stream.py [--annotations 20000 --seg-points 400]

Writes two COCO-like files (the same number of annotations; the second with 4x the
segmentation payload, i.e. ~4x the bytes), reads each in a fresh process with the streamed
adapter and with ``json.loads``, and prints peak RSS - baseline per file and the ratio
big/small (1.0 = independent of the file size). One run, one machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile


def make_file(path: str, n: int, seg_points: int) -> int:
    with open(path, "w") as f:
        f.write('{"annotations": [')
        for i in range(n):
            ann = {"id": i, "image_id": i % 1000, "category_id": 1, "iscrowd": 0, "area": 1000.0,
                   "bbox": [10.0, 20.0, 100.0, 200.0], "num_keypoints": 17,
                   "keypoints": [float(50 + j) if j % 3 != 2 else 2 for j in range(51)],
                   "segmentation": [[float(k % 640) + 0.5 for k in range(seg_points)]]}
            f.write(("," if i else "") + json.dumps(ann))
        f.write('], "images": [' + ",".join(json.dumps({"id": k, "file_name": f"{k}.jpg", "width": 640,
                                                          "height": 480}) for k in range(1000)))
        f.write('], "categories": [{"id": 1, "name": "person", "keypoints": []}]}')
    return os.path.getsize(path)


def child(path: str, mode: str) -> None:
    import annotator.data.adapters.coco as coco
    from annotator.config import DatasetConfig, ManifestConfig

    if mode == "json":
        coco.read_coco_slim = lambda p, what="": json.loads(open(p, "rb").read())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = coco.read_coco(DatasetConfig(name="x", format="coco", role="target", path=path, images="/tmp"), ManifestConfig())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": res.table.num_rows, "base_mib": base / 1024, "peak_mib": peak / 1024}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--annotations", type=int, default=20000)
    ap.add_argument("--seg-points", type=int, default=400)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, seg in (("small", args.seg_points), ("big", 4 * args.seg_points)):
            path = os.path.join(tmp, f"{label}.json")
            size = make_file(path, args.annotations, seg)
            for mode in ("stream", "json"):
                r = json.loads(subprocess.run([sys.executable, __file__, "--child", path, mode], check=True,
                                              capture_output=True, text=True).stdout)
                out[(label, mode)] = r["peak_mib"] - r["base_mib"]
                print(f"{label}: {size / 2**20:7.1f} MiB file, {mode:6s}: +{out[(label, mode)]:7.1f} MiB peak RSS "
                      f"({out[(label, mode)] * 2**20 / size:.2f} x file)", flush=True)
    for mode in ("stream", "json"):
        print(f"{mode}: peak RSS big/small file = {out[('big', mode)] / max(out[('small', mode)], 1e-9):.2f} "
              f"(file size ratio ~4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
