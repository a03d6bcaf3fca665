"""``annotator synth`` sub-commands through argparse, and the contact sheet."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from annotator.data.synth import cli
from annotator.data.synth.contact_sheet import OCCLUDED, VISIBLE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="annotator")
    cli.add_commands(p.add_subparsers(dest="command", required=True))
    return p


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def test_generate_and_contact_sheet(tmp_path, body_model, capsys):
    data = tmp_path / "wild"
    assert _run(["synth", "--domain", "wild", "--num-images", "3", "--seed", "5", "--out", str(data),
                 "--image-size", "200x160"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["num_images"] == 3 and printed["files"]["annotations"] == "annotations/person_keypoints.json"
    summary = json.loads((data / "synth.json").read_text())
    assert summary["image_sizes"] == {"200x160": 3} and summary["config"]["seed"] == 5
    sheet = tmp_path / "sheet.png"
    assert _run(["synth", "contact-sheet", "--data", str(data), "--out", str(sheet), "--columns", "3",
                 "--rows", "1", "--tile", "128"]) == 0
    img = np.asarray(Image.open(sheet).convert("RGB"))
    assert img.shape == (128, 384, 3)
    # keypoint markers are drawn in the visibility colours
    assert (img == VISIBLE).all(-1).sum() > 20
    assert summary["keypoint_visibility"]["1"] == 0 or (img == OCCLUDED).all(-1).sum() > 0


def test_bad_arguments_are_explained():
    with pytest.raises(SystemExit):
        _parser().parse_args(["synth", "--image-size", "big"])
    args = _parser().parse_args(["synth", "--num-images", "2"])
    with pytest.raises(SystemExit, match="--domain and --out are required"):
        args.func(args)
