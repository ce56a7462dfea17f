"""DVC reads the repository's YAML files with ruamel's C parser, to the same data as pure Python.

``dvc repro`` parses ``dvc.lock`` about three times for every stage it runs (and ``dvc.yaml``
and ``params.yaml`` besides). ruamel.yaml takes its C parser (``ruamel.yaml.clib``, a declared
dependency) for these "safe" loads when it is installed, and parses pure Python otherwise: 0.15 s
against 0.03 s for this repository's ``dvc.lock`` (docs/benchmarks-log.md, 2026-12-07).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_dvc_safe_loads_take_the_c_parser():
    from ruamel.yaml import YAML

    # What dvc.utils.serialize._yaml.parse_yaml builds for every safe load.
    assert YAML(typ="safe").Parser.__name__ == "CParser"
    assert YAML(typ="safe", pure=True).Parser.__name__ == "Parser"  # the control


@pytest.mark.parametrize("name", ["dvc.yaml", "dvc.lock", "params.yaml"])
def test_the_c_parser_reads_the_repository_files_as_pure_python_does(name):
    from dvc.utils.serialize._yaml import parse_yaml
    from ruamel.yaml import YAML

    text = (ROOT / name).read_text()
    parsed = parse_yaml(text, name)
    assert parsed  # not an empty document
    assert parsed == YAML(typ="safe", pure=True).load(text)
