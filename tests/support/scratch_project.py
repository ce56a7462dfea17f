"""A scratch copy of the project where the real pipeline runs (``git init``, ``dvc repro``).

The end-to-end and notebook tests share it so the developer's workspace is never touched:
``dvc.yaml``, ``pyproject.toml`` and ``src/`` are copied into a temporary directory, the
parameters are shrunk for speed, and the pipeline runs through the real ``dvc`` CLI with the
test interpreter's environment (``churn`` on ``PATH``, MLflow's SQLite store inside the copy).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
GIT = ("git", "-c", "user.name=t", "-c", "user.email=t@example.invalid")
DVC = (sys.executable, "-m", "dvc")


def run(cmd: list[str] | tuple[str, ...], cwd: Path, env: Mapping[str, str]) -> str:
    """Run a command; on failure, fail with the tail of its output.

    Returns:
        The command's standard output.
    """
    completed = subprocess.run(
        list(cmd), cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, (
        f"{' '.join(cmd)} failed ({completed.returncode})\n"
        f"--- stdout\n{completed.stdout[-6000:]}\n--- stderr\n{completed.stderr[-6000:]}"
    )
    return completed.stdout


def pipeline_env() -> dict[str, str]:
    """The environment the pipeline runs in: this interpreter's tools, UTC, no stray config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = sys.executable
    env["TZ"] = "UTC"
    return env


def copy_project(
    work: Path, overrides: Mapping[str, Mapping[str, Any]]
) -> tuple[Path, dict[str, str]]:
    """Copy the project into ``work`` and commit it, without running the pipeline.

    Args:
        work: An empty directory.
        overrides: ``params.yaml`` section -> keys to replace, e.g.
            ``{"simulate": {"customers": 1200, "months": 18}}``.

    Returns:
        ``(work, env)``: the project directory (a git and DVC repository with one commit) and
        the environment to run commands in.
    """
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    # data/raw/ (the user's folder, a dep of ingest) exists in a fresh clone through its README.
    (work / "data" / "raw").mkdir(parents=True)
    shutil.copy(REPO / "data" / "raw" / "README.md", work / "data" / "raw" / "README.md")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / ".gitignore").write_text("/mlflow.db\n/mlflow.db.gate.lock\n/mlartifacts/\n")

    env = pipeline_env()
    run(["git", "init", "-q"], work, env)
    run([*DVC, "init", "-q"], work, env)
    shutil.copy(REPO / ".dvcignore", work / ".dvcignore")  # dvc init wrote an empty one
    shutil.copy(REPO / ".dvc" / "config", work / ".dvc" / "config")  # offline, as a clone is
    run([*GIT, "add", "-A"], work, env)
    run([*GIT, "commit", "-qm", "init"], work, env)
    return work, env


def build_scratch_project(
    work: Path, overrides: Mapping[str, Mapping[str, Any]], stage: str | None = None
) -> tuple[Path, dict[str, str]]:
    """Copy the project into ``work``, commit it, and run ``dvc repro`` there.

    Args:
        work: An empty directory.
        overrides: ``params.yaml`` section -> keys to replace, e.g.
            ``{"simulate": {"customers": 1200, "months": 18}}``.
        stage: Run only this stage and the stages it depends on (``dvc repro <stage>``);
            every stage when ``None``.

    Returns:
        ``(work, env)``: the project directory and the environment to run more commands in.
        The repository has one commit (the inputs); the pipeline's outputs are uncommitted.
    """
    work, env = copy_project(work, overrides)
    run([*DVC, "repro", *([stage] if stage else [])], work, env)
    return work, env
