"""dvc.yaml is complete and exact: commands, params and code dependencies of every stage.

DVC reruns a stage only when one of its declared ``deps`` or ``params`` changes, so each stage
must declare

* a ``cmd`` the CLI accepts, with every required option (paths live in dvc.yaml only), and
  every path it passes covered by a declared dependency or output;
* exactly the ``params.yaml`` keys its runner reads: *measured* here by running every stage's
  command from dvc.yaml on tiny data while attribute reads on the frozen config objects are
  recorded (a declared key nobody reads would rerun the stage for nothing; a read key left out
  would leave stale outputs);
* the package folders or files of every ``churn`` module its runner imports, at any depth and
  including imports inside functions (computed with :mod:`ast`).

Measurement runs two configurations, shrunk in size: the repository's ``params.yaml`` (events
mode on simulated data) and entity mode on a CRM-style export; a stage declares the union of
what it reads in both. Both use the local engine: the Spark engine's execution knobs
(``features.spark.*``) are read only when ``features.engine`` is ``spark`` and do not change
results, so they are not declared.
"""

from __future__ import annotations

import ast
import copy
import shlex
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from churn import cli
from churn import config as churn_config

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES: dict[str, dict[str, Any]] = DVC["stages"]
#: Data deps no stage produces: the user's folder (data.source: files), in git with its README.
USER_INPUTS = {"data/raw"}

#: Size knobs shrunk so the whole pipeline runs in seconds; every other knob is the repo's.
TINY = {
    "simulate": {"customers": 600, "months": 18},
    "train": {"n_estimators": 40, "num_threads": 1, "min_child_samples": 20, "min_positives": 5},
    "evaluate": {"backtest_cutoffs": 2},  # one cutoff reuses the exported model, one refits
    "explain": {"sample_rows": 60, "dependence_features": 1},
    "score": {"batch_rows": 1000},
}


# ----------------------------------------------------------------------------- helpers


def _command(stage: str) -> Any:
    """Return the CLI's (click) command for ``stage``."""
    return typer.main.get_command(cli.app).commands[stage]


def _cmd_args(stage: str) -> list[str]:
    """Return the arguments after ``churn <stage>`` in the stage's cmd."""
    words = shlex.split(STAGES[stage]["cmd"])
    assert words[:2] == ["churn", stage], f"{stage}: cmd must start with 'churn {stage}'"
    return words[2:]


def _entries(spec: dict[str, Any], *keys: str) -> list[str]:
    """Return the path (or param) entries under ``keys``, whether plain or ``{path: opts}``."""
    found = []
    for key in keys:
        for entry in spec.get(key, []) or []:
            found.extend([entry] if isinstance(entry, str) else list(entry))
    return found


def _covered(path: str, declared: list[str]) -> bool:
    target = Path(path)
    return any(target == Path(d) or Path(d) in target.parents for d in declared)


def _section_prefixes() -> dict[type, str]:
    """Map every config section class to its dotted prefix in Params (each is used once)."""
    prefixes: dict[type, str] = {churn_config.Params: ""}

    def walk(model: type, prefix: str) -> None:
        for name, info in model.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, churn_config._Section):
                assert kind not in prefixes, f"{kind.__name__} appears twice in Params"
                prefixes[kind] = f"{prefix}{name}."
                walk(kind, f"{prefix}{name}.")

    walk(churn_config.Params, "")
    return prefixes


PREFIXES = _section_prefixes()


def _leaves(model: type, prefix: str = "") -> set[str]:
    """Return the dotted leaf keys of a config model (nested sections expanded)."""
    keys = set()
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, churn_config._Section):
            keys |= _leaves(kind, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


ALL_LEAVES = _leaves(churn_config.Params)


def _expand(declared: list[str]) -> set[str]:
    """Return the leaf keys a list of declared params covers (a section covers its leaves)."""
    keys = set()
    for key in declared:
        matched = {leaf for leaf in ALL_LEAVES if leaf == key or leaf.startswith(f"{key}.")}
        assert matched, f"declared param {key!r} is not a params.yaml key"
        keys |= matched
    return keys


class ReadRecorder:
    """Record which dotted params keys are read while installed (attribute access or dumps)."""

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.paused = False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        recorder = self
        section = churn_config._Section
        plain_getattribute = object.__getattribute__
        plain_dump, plain_dump_json = section.model_dump, section.model_dump_json

        def traced_getattribute(self: Any, name: str) -> Any:
            value = plain_getattribute(self, name)
            prefix = PREFIXES.get(type(self))
            if (
                not recorder.paused
                and prefix is not None
                and name in type(self).model_fields
                and not isinstance(value, section)
            ):
                recorder.reads.add(f"{prefix}{name}")
            return value

        def record_all(self: Any) -> None:
            prefix = PREFIXES.get(type(self))
            if not recorder.paused and prefix is not None:
                recorder.reads |= _leaves(type(self), prefix)

        def traced_dump(self: Any, *args: Any, **kwargs: Any) -> Any:
            record_all(self)
            return plain_dump(self, *args, **kwargs)

        def traced_dump_json(self: Any, *args: Any, **kwargs: Any) -> Any:
            record_all(self)
            return plain_dump_json(self, *args, **kwargs)

        plain_load = cli.load_params

        def untraced_load(*args: Any, **kwargs: Any) -> Any:
            # Validation reads keys (e.g. the cutoff order check) for every stage alike.
            recorder.paused = True
            try:
                return plain_load(*args, **kwargs)
            finally:
                recorder.paused = False

        monkeypatch.setattr(section, "__getattribute__", traced_getattribute)
        monkeypatch.setattr(section, "model_dump", traced_dump)
        monkeypatch.setattr(section, "model_dump_json", traced_dump_json)
        monkeypatch.setattr(cli, "load_params", untraced_load)


def _iter_imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Yield the dotted names a module's imports may load, at any depth (also import_module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base_parts = parts if is_package else parts[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value  # importlib.import_module("churn.spark.engine")


def _module_file(name: str) -> Path | None:
    """Return the source file of ``churn`` module ``name``, or ``None`` if it is not one."""
    if name != "churn" and not name.startswith("churn."):
        return None
    path = SRC.joinpath(*name.split("."))
    if path.is_dir() and (path / "__init__.py").exists():
        return path / "__init__.py"
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    return None


def _holds_code(path: Path) -> bool:
    """Tell whether a module has statements beyond its docstring and dunder metadata.

    ``churn/__init__.py`` (a docstring and ``__version__``) cannot change a stage's result.
    """

    def is_metadata(node: ast.stmt) -> bool:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return True
        return isinstance(node, ast.Assign) and all(
            isinstance(target, ast.Name) and target.id.startswith("__") for target in node.targets
        )

    return not all(is_metadata(node) for node in ast.parse(path.read_text()).body)


def import_closure(root: str) -> set[Path]:
    """Return the files of every ``churn`` module ``root`` imports, transitively.

    When ``root`` is a package (``churn.stages.simulate``) all its modules count. Package
    ``__init__`` files that hold only a docstring (and ``__version__``) are left out.
    """
    seen: set[Path] = set()
    todo = [root]
    root_file = _module_file(root)
    assert root_file is not None, f"{root} is not a churn module"
    if root_file.name == "__init__.py":
        todo.extend(f"{root}.{child.stem}" for child in root_file.parent.glob("*.py"))
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        todo.extend(_iter_imports(tree, name, path.name == "__init__.py"))
    return {path for path in seen if path.name != "__init__.py" or _holds_code(path)}


# ----------------------------------------------------------------------------- (a) commands


@pytest.mark.parametrize("stage", list(STAGES))
def test_cmd_is_the_stage_command_with_every_required_option(stage):
    command = _command(stage)
    args = _cmd_args(stage)
    context = command.make_context(f"churn {stage}", list(args))  # unknown/missing -> raises
    given = {
        param.name
        for param in command.params
        if context.get_parameter_source(param.name).name == "COMMANDLINE"
    }
    required = {param.name for param in command.params if param.required}
    assert required <= given, f"{stage}: required options missing: {required - given}"


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_path_in_the_cmd_is_a_declared_dep_or_output(stage):
    command = _command(stage)
    context = command.make_context(f"churn {stage}", list(_cmd_args(stage)))
    spec = STAGES[stage]
    inputs = _entries(spec, "deps")
    outputs = _entries(spec, "outs", "metrics", "plots")
    for param in command.params:
        value = context.params.get(param.name)
        if not isinstance(value, Path) or param.name == "params":
            continue
        assert _covered(str(value), inputs + outputs), (
            f"{stage}: --{param.name.replace('_', '-')} {value} is neither a dep nor an output"
        )


def test_every_stage_is_a_cli_command_and_outputs_feed_declared_deps():
    group = typer.main.get_command(cli.app)
    assert set(STAGES) <= set(group.commands)
    outputs = {out for spec in STAGES.values() for out in _entries(spec, "outs", "metrics")}
    for stage, spec in STAGES.items():
        for dep in _entries(spec, "deps"):
            if dep.startswith("src/") or dep in USER_INPUTS:
                assert (REPO / dep).exists(), f"{stage}: dep {dep} does not exist"
            else:
                assert any(_covered(dep, [out]) for out in outputs), (
                    f"{stage}: data dep {dep} is produced by no stage"
                )


# ----------------------------------------------------------------------------- (b) params


def _crm_export(n: int, seed: int) -> pd.DataFrame:
    """A CRM-style export for entity mode: integer ids and codes, the export's own names."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    contract = rng.integers(0, 3, n)  # an integer code, as many exports have
    calls = rng.poisson(1.5, n)
    logit = -1.0 - 0.04 * tenure + 0.5 * calls + np.where(contract == 0, 1.2, -0.8)
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "CustomerID": np.arange(100_000, 100_000 + n),
            "tenure_months": tenure,
            "MonthlyCharges": rng.uniform(20, 120, n).round(2),
            "ContractCode": contract,
            "support_calls": calls,
            "churned": np.where(churned, "Yes", "No"),
        }
    )


def _run_stages(
    work: Path, params: dict[str, Any], stages: list[str], recorder: ReadRecorder
) -> dict[str, set[str]]:
    """Run ``stages``' dvc.yaml commands in ``work`` with ``params``; return each one's reads."""
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    reads: dict[str, set[str]] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        # The default store (sqlite:///mlflow.db in the working directory), as in a fresh clone.
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        # As under `dvc repro`, where a library's warning is not an error.
        patch.setattr(warnings, "filters", [("ignore", None, Warning, None, 0)])
        runner = CliRunner()
        for stage in stages:
            recorder.reads = set()
            result = runner.invoke(cli.app, [stage, *_cmd_args(stage)])
            assert result.exit_code == 0, (stage, result.output, result.exception)
            reads[stage] = set(recorder.reads)
    return reads


@pytest.fixture(scope="module")
def pipeline_runs(tmp_path_factory) -> tuple[dict[str, set[str]], Path]:
    """Run every stage's dvc.yaml command on tiny data.

    Two configurations: the repository's ``params.yaml`` (events mode, simulated data) and
    entity mode on a CRM-style export; a stage must declare the union of what it reads in
    both, since a knob read in either mode changes that mode's results.

    Returns:
        The params keys each stage read, and the events-mode project directory.
    """
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TINY.items():
        base[section].update(values)
    entity = copy.deepcopy(base)
    entity["data"] = {"source": "files"}
    entity["ingest"].update(
        {
            "mode": "entity",
            "as_of": "2026-01-31",
            "label_column": "churned",
            "tables": {
                "customers": {"file": "crm_export.csv", "columns": {"customer_id": "CustomerID"}}
            },
        }
    )
    recorder = ReadRecorder()
    with pytest.MonkeyPatch.context() as patch:
        recorder.install(patch)
        events_work = tmp_path_factory.mktemp("dvc_events")
        reads = _run_stages(events_work, base, list(STAGES), recorder)
        entity_work = tmp_path_factory.mktemp("dvc_entity")
        (entity_work / "data" / "raw").mkdir(parents=True)
        _crm_export(600, seed=3).to_csv(entity_work / "data/raw/crm_export.csv", index=False)
        # data.source: files, so simulate runs too (it writes only its markers).
        for stage, keys in _run_stages(entity_work, entity, list(STAGES), recorder).items():
            reads[stage] |= keys
    return reads, events_work


@pytest.fixture(scope="module")
def measured_reads(pipeline_runs) -> dict[str, set[str]]:
    """The params keys each stage read (see :func:`pipeline_runs`)."""
    return pipeline_runs[0]


def test_the_report_finds_every_input_the_stages_wrote(pipeline_runs):
    """Writers and readers agree on the file names inside output dirs (churn.layout)."""
    from churn.report.inputs import ReportPaths, load_report_inputs

    work = pipeline_runs[1]
    command = _command("report")
    given = command.make_context("churn report", list(_cmd_args("report"))).params
    paths = ReportPaths(
        **{name: work / given[name] for name in ("ingest_report", "train_report", "metrics")},
        model_record=work / given["model_record"],
        **{name: work / given[name] for name in ("plots_dir", "explain_dir", "catalog")},
        labels=work / given["labels"],
        scores=work / given["scores"],
        target_report=work / given["target_report"],
        targets_dir=work / given["targets_dir"],
    )
    inputs = load_report_inputs(paths)
    # The first scoring has nothing to compare with; everything else must be there.
    assert set(inputs.missing) == {"changes"}, inputs.missing
    assert set(inputs.plots) == {"roc", "precision_recall", "calibration", "gains"}
    assert len(inputs.explain_tables) == 3 and inputs.explain_summary is not None
    assert inputs.explain_images and inputs.catalog is not None
    assert inputs.target is not None and inputs.targets is not None
    assert inputs.target_curves is not None


def test_the_recorder_sees_reads_and_dumps(monkeypatch):
    params = churn_config.Params()  # validation reads keys; not recorded here
    recorder = ReadRecorder()
    recorder.install(monkeypatch)
    _ = params.train.gate.margin
    _ = params.features.spark
    assert recorder.reads == {"train.gate.margin"}
    params.explain.model_dump()
    dumped = {"explain.sample_rows", "explain.dependence_features"}
    assert recorder.reads == {"train.gate.margin", *dumped}


@pytest.mark.parametrize("stage", list(STAGES))
def test_declared_params_are_exactly_the_keys_the_stage_reads(stage, measured_reads):
    declared = _expand(_entries(STAGES[stage], "params"))
    read = measured_reads[stage]
    assert read, f"{stage}: no parameter read recorded; is the recorder working?"
    assert not read - declared, f"{stage}: reads undeclared params {sorted(read - declared)}"
    assert not declared - read, f"{stage}: declares params it never reads {sorted(declared - read)}"


# ----------------------------------------------------------------------------- (c) code deps


@pytest.mark.parametrize("stage", list(STAGES))
def test_deps_cover_every_module_the_stage_imports(stage):
    declared = [d for d in _entries(STAGES[stage], "deps") if d.startswith("src/")]
    closure = import_closure(f"churn.stages.{stage}")
    assert any(p.is_relative_to(SRC / "churn" / "stages") for p in closure)
    uncovered = sorted(
        str(path.relative_to(REPO))
        for path in closure
        if not _covered(str(path.relative_to(REPO)), declared)
    )
    assert not uncovered, f"{stage}: deps miss imported modules {uncovered}"


def test_import_closure_follows_function_level_and_nested_imports():
    score = import_closure("churn.stages.score")
    names = {str(p.relative_to(SRC)) for p in score}
    assert "churn/stages/features.py" in names  # imported inside a function
    assert "churn/layout.py" in names  # through churn.io at module level
    assert "churn/model/treeshap/tables.py" in names  # two levels down (scoring -> artifact)
    assert "churn/spark/features.py" in names  # importlib.import_module("churn.spark.features")
