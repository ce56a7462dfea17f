"""data/ and models/ exist in a fresh clone (tracked READMEs) while their outputs stay ignored."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
READMES = ["data/README.md", "data/raw/README.md", "models/README.md"]
#: Input folders the user fills (data.source: files): tracked README, untracked files, kept.
USER_FOLDERS = ["data/raw"]


def dvc_outputs_under(*folders: str) -> list[str]:
    """Return every output path in dvc.yaml that lies under one of ``folders``."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outputs = []
    for stage in stages.values():
        for out in stage.get("outs", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            if path.split("/")[0] in folders:
                outputs.append(path)
    return outputs


def git_ignored(paths: list[str]) -> set[str]:
    """Return the subset of ``paths`` that git ignores in this checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        input="\n".join(paths),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: none ignored
    return set(result.stdout.split())


def test_readmes_exist_and_name_every_output_folder() -> None:
    outputs = dvc_outputs_under("data", "models")
    # simulated/raw, simulated/truth, validated, quarantine, labels, features, scores, churn
    assert len(outputs) >= 8
    for readme in ["data/README.md", "models/README.md"]:
        folder = readme.split("/")[0]
        text = (ROOT / readme).read_text()
        for output in outputs:
            if output.startswith(f"{folder}/"):
                top = output.split("/")[1]
                assert f"`{top}/`" in text, f"{readme} does not describe {output}"


def test_readmes_are_tracked_and_outputs_ignored() -> None:
    outputs = dvc_outputs_under("data", "models")
    samples = [f"{output}/part.parquet" for output in outputs] + outputs

    ignored = git_ignored([*READMES, *samples])

    assert not ignored & set(READMES)
    assert set(samples) <= ignored


def test_user_folders_are_not_outputs_and_their_files_stay_untracked() -> None:
    outputs = dvc_outputs_under("data", "models")
    user_files = [f"{folder}/{name}" for folder in USER_FOLDERS for name in ("a.csv", "b.parquet")]

    ignored = git_ignored([*user_files, *(f"{folder}/README.md" for folder in USER_FOLDERS)])

    assert set(user_files) <= ignored
    assert not ignored & {f"{folder}/README.md" for folder in USER_FOLDERS}
    for folder in USER_FOLDERS:
        assert not [out for out in outputs if out == folder or out.startswith(f"{folder}/")]
        assert f"`{folder.split('/')[1]}/`" in (ROOT / "data/README.md").read_text()


def test_make_clean_keeps_the_readmes() -> None:
    makefile = (ROOT / "Makefile").read_text().splitlines()
    recipe = makefile[makefile.index("clean:") + 1]
    words = shlex.split(recipe)
    assert words[:2] == ["rm", "-rf"]
    removed = [word.rstrip("/") for word in words[2:]]
    assert "data/simulated" in removed  # the parse found the real recipe
    for kept in ["data", "models", *READMES, *USER_FOLDERS]:
        assert kept not in removed
    assert not [word for word in removed if "*" in word]
