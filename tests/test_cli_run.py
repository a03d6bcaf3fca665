"""`annotator run` is `python -m annotator.run`: every argument reaches the one parser there."""
from __future__ import annotations

import pytest

from annotator.cli import build_parser, main


def test_run_passes_every_argument_through_in_order():
    args = build_parser().parse_args(["run", "--set", "x=1", "job.yaml", "--force", "pretrain"])
    assert args.args == ["--set", "x=1", "job.yaml", "--force", "pretrain"]


def test_run_force_is_checked_by_the_job_runner(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "jobs/demo.yaml", "--force", "no-such-step"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown step 'no-such-step'" in err and "train-pose-prior" in err


def test_run_help_is_the_job_runner_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    assert "--force" in capsys.readouterr().out


def test_run_names_a_missing_job_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["run", str(missing)]) == 2
    assert f"{missing}: job file not found" in capsys.readouterr().err
