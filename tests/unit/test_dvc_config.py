"""The repository's DVC configuration keeps ``dvc repro`` offline.

DVC sends a usage report and looks for a newer release from every command (from background
processes) unless its configuration says not to; the project's ``.dvc/config`` does. DVC's own
switches are asked here, in the repository and, as the control, in a fresh ``dvc init``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Variables that turn DVC's network use off by themselves (its own tests, CI): left out so that
#: the answers below come from the configuration alone.
_SWITCHES = ("DVC_TEST", "DVC_NO_ANALYTICS", "CI")


def _ask_dvc(
    folder: Path, machine_config: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[bool, bool]:
    """Return whether DVC, run in ``folder``, would send analytics and check for updates.

    The machine's own (global and system) DVC configuration is replaced by an empty folder,
    ``machine_config``: only the repository's configuration speaks.
    """
    from dvc.analytics import is_enabled
    from dvc.updater import Updater

    for name in _SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(machine_config / "global"))
    monkeypatch.setenv("DVC_SYSTEM_CONFIG_DIR", str(machine_config / "system"))
    monkeypatch.chdir(folder)
    return is_enabled(), Updater(str(folder / ".dvc" / "tmp")).is_enabled()


def test_dvc_sends_no_report_and_checks_no_update_in_this_repository(tmp_path, monkeypatch):
    assert _ask_dvc(ROOT, tmp_path, monkeypatch) == (False, False)


def test_a_fresh_dvc_repository_would_do_both(tmp_path, monkeypatch):
    # The control: the answers above come from .dvc/config, not from DVC's defaults.
    from dvc.repo import Repo

    project = tmp_path / "project"
    project.mkdir()
    Repo.init(str(project), no_scm=True).close()
    assert _ask_dvc(project, tmp_path, monkeypatch) == (True, True)


def _hash_threads(folder: Path, machine_config: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Return how many threads DVC, opened in ``folder``, hashes output files with."""
    from dvc.repo import Repo

    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(machine_config / "global"))
    monkeypatch.setenv("DVC_SYSTEM_CONFIG_DIR", str(machine_config / "system"))
    monkeypatch.chdir(folder)
    with Repo(str(folder)) as repo:
        return repo.fs.hash_jobs


def test_dvc_hashes_outputs_with_four_threads_in_this_repository(tmp_path, monkeypatch):
    assert _hash_threads(ROOT, tmp_path, monkeypatch) == 4


def test_a_fresh_dvc_repository_hashes_with_dvcs_default(tmp_path, monkeypatch):
    # The control: DVC's default is max(1, min(4, cores // 2)), one thread on a 2-core machine.
    import os

    from dvc.repo import Repo

    project = tmp_path / "project"
    project.mkdir()
    Repo.init(str(project), no_scm=True).close()
    default = max(1, min(4, (os.cpu_count() or 1) // 2))
    assert _hash_threads(project, tmp_path, monkeypatch) == default
