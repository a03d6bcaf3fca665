"""The README stays true: its config reference is generated from the code; commands exist."""
import re
from pathlib import Path

from annotator.cli import build_parser
from annotator.config import reference_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_config_reference_matches_code():
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    section = README[README.index(start) + len(start):README.index(end)]
    assert section == reference_markdown(), "regenerate with: python -m annotator.config"


def test_config_reference_gives_the_jobs_defaults_not_the_classes():
    """``pretrain: PretrainConfig = PretrainConfig(epochs=5, lr=1e-4)``: a job without the key trains 5 epochs."""
    from annotator.config import JobConfig

    job = JobConfig(name="x", datasets=[])
    rows = {line.split("|")[1].strip(" `"): line.split("|")[3].strip(" `") for line in reference_markdown().splitlines()[2:]}
    for key in ("pretrain.epochs", "finetune.lr", "spin.epochs", "aux_image.epochs", "aux_image.lr"):
        section, field = key.split(".")
        assert rows[key] == repr(getattr(getattr(job, section), field)), key
    assert rows["pretrain.epochs"] == "5" and rows["body_model.cache_dir"] == "(see text)"


def test_two_setup_commands_and_ci_calls_the_test_command():
    block = README.split("## Set-up on a fresh machine", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_documented_subcommands_exist():
    sub = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public accessor
    for name in set(re.findall(r"`annotator (\w+)", README)):
        assert name in sub, f"README documents `annotator {name}` but the CLI has no such command"


def test_linked_files_exist():
    for link in re.findall(r"\]\(((?:docs|schemas)/[^)]+)\)", README):
        assert (ROOT / link).exists(), link
