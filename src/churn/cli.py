"""The ``churn`` command line: one subcommand per pipeline stage.

Each subcommand is a thin shell over the stage's runner (``churn.<stage>.run_<stage>``), which
does the I/O around a pure core. Paths are required options with no defaults: ``dvc.yaml`` is
their only home and passes every one. Knobs come from ``params.yaml``; an option that overrides
a knob (``--customers``, ``--cutoff``, ``--engine``, ...) is applied through the config loader
(:func:`churn.config.load_params`), so it meets the same validation rules as the file. Stage
modules are imported inside the commands so that ``churn --help`` stays fast and importing the
CLI has no side effects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from churn.config import ConfigError, Params, load_params

app = typer.Typer(
    name="churn",
    help="Point-in-time churn prediction for subscription businesses: "
    "simulate|ingest -> label -> features -> train -> evaluate -> score -> explain -> report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ParamsOpt = Annotated[
    Path, typer.Option("--params", help="Parameter file (the only home of knobs).")
]
# The inputs several commands read, with one help text each.
FeaturesOpt = Annotated[Path, typer.Option(help="Feature table from 'churn features'.")]
LabelsOpt = Annotated[Path, typer.Option(help="Labels Parquet from 'churn label'.")]
CatalogOpt = Annotated[Path, typer.Option(help="Feature catalog CSV from 'churn features'.")]
ModelDirOpt = Annotated[Path, typer.Option(help="Exported model directory.")]
ValidatedOpt = Annotated[Path, typer.Option(help="Directory of validated tables.")]


class StageError(RuntimeError):
    """A stage failed for a reason the user can fix (bad input, bad config); exit code 2."""


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
        force=True,
    )
    # numba logs every step of a compilation at DEBUG (tens of thousands of lines for the
    # TreeSHAP kernel), which would bury the stages' own debug lines.
    logging.getLogger("numba").setLevel(logging.WARNING)


def _report_native_crashes() -> None:
    """Print every thread's Python stack on a fatal signal (a crash in native code).

    A segmentation fault inside LightGBM, DuckDB or numba ends the process without a Python
    traceback; ``faulthandler`` then says which stage code was running in each thread. A
    stream without a file descriptor (a test runner's capture) is left as it is.
    """
    import contextlib
    import faulthandler
    import io
    import sys

    # No real stderr (no file descriptor): nothing to print a crash to.
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        faulthandler.enable(file=sys.__stderr__, all_threads=True)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    _setup_logging(verbose)
    _report_native_crashes()


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/bold red] {message}", highlight=False)
    raise typer.Exit(code=2)


def _load(params: Path, overrides: dict[str, Any] | None = None) -> Params:
    """Load params with the command-line overrides (dotted key -> value; ``None`` = not given)."""
    try:
        return load_params(params, overrides)
    except ConfigError as exc:
        _fail(str(exc))


def _run(func, /, **kwargs) -> None:
    """Call a runner, turning user-fixable errors into a clean message and exit code 2.

    Every command allocates as :func:`churn.io.set_up_process_memory` sets up: Arrow with the
    C library's allocator, numpy without the huge-page advice (less system time, same outputs).
    """
    from churn.errors import ChurnError
    from churn.io import set_up_process_memory

    set_up_process_memory()
    try:
        func(**kwargs)
    except (ChurnError, ConfigError) as exc:
        _fail(str(exc))


@app.command()
def simulate(
    params: ParamsOpt,
    out: Annotated[Path, typer.Option(help="Directory for the raw contract tables (Parquet).")],
    truth: Annotated[
        Path, typer.Option(help="Directory for the ground truth (never read by training).")
    ],
    customers: Annotated[int | None, typer.Option(help="Override simulate.customers.")] = None,
    months: Annotated[int | None, typer.Option(help="Override simulate.months.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override simulate.seed.")] = None,
) -> None:
    """Simulate a subscription business: raw contract tables plus ground truth.

    With data.source 'files' the simulator is off: only a README marker in each folder.
    """
    from churn.stages.simulate.engine import run_simulate

    overrides = {"simulate.customers": customers, "simulate.months": months, "simulate.seed": seed}
    p = _load(params, overrides)
    _run(run_simulate, config=p.simulate, out_dir=out, truth_dir=truth, source=p.data.source)


@app.command()
def ingest(
    params: ParamsOpt,
    raw: Annotated[
        Path, typer.Option(help="Directory with your own raw tables (CSV or Parquet).")
    ],
    out: Annotated[Path, typer.Option(help="Directory for validated tables.")],
    quarantine: Annotated[
        Path, typer.Option(help="Directory for quarantined rows, with the failed rule per row.")
    ],
    report: Annotated[Path, typer.Option(help="JSON report: rows in, valid, quarantined.")],
    simulated_raw: Annotated[
        Path | None,
        typer.Option(
            help="Directory with the simulator's raw tables, read instead of --raw when "
            "data.source is 'simulator'. Not given: --raw is read."
        ),
    ] = None,
    data_check: Annotated[
        Path | None,
        typer.Option(
            help="JSON data check of the valid tables (tables, cutoffs, feature families), "
            "as churn check-data shows it. Not given: not written."
        ),
    ] = None,
) -> None:
    """Validate raw tables against the data contract; quarantine bad rows."""
    from churn.stages.ingest import choose_raw_dir, run_ingest

    loaded = _load(params)
    _run(
        run_ingest,
        config=loaded.ingest,
        raw_dir=choose_raw_dir(loaded.data.source, raw, simulated_raw),
        out_dir=out,
        quarantine_dir=quarantine,
        report_path=report,
        customer_attributes=loaded.features.customer_attributes,
        params=loaded,
        data_check_path=data_check,
    )


@app.command("check-data")
def check_data(
    params: ParamsOpt,
    validated: ValidatedOpt,
    ingest_report: Annotated[
        Path | None,
        typer.Option(help="Ingest's JSON report, for the ignored columns (optional)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also write the check as JSON here (optional).")
    ] = None,
) -> None:
    """Check the validated data before training: tables, coverage, cutoffs, feature families."""
    from churn.stages.check_data import run_check_data

    _run(
        run_check_data,
        params=_load(params),
        validated_dir=validated,
        ingest_report_path=ingest_report,
        out_path=out,
    )


@app.command()
def label(
    params: ParamsOpt,
    validated: ValidatedOpt,
    out: Annotated[Path, typer.Option(help="Labels Parquet: one row per customer and cutoff.")],
    report: Annotated[
        Path,
        typer.Option(help="JSON report: per cutoff population, churners, rate, why unlabeled."),
    ],
) -> None:
    """Build point-in-time labels over the cutoff schedule and check their churn rates."""
    from churn.stages.label import run_label

    p = _load(params)
    _run(run_label, params=p, validated_dir=validated, out_path=out, report_path=report)


@app.command()
def features(
    params: ParamsOpt,
    validated: ValidatedOpt,
    labels: LabelsOpt,
    out: Annotated[Path, typer.Option(help="Feature table Parquet.")],
    catalog: Annotated[Path, typer.Option(help="Feature catalog CSV.")],
    engine: Annotated[
        str | None, typer.Option(help="Override features.engine: 'local' (DuckDB) or 'spark'.")
    ] = None,
    scoring_out: Annotated[
        Path | None,
        typer.Option(
            help="Also write the scoring cutoff's rows here (the customers 'churn score' "
            "scores), for 'churn score --scoring-features'."
        ),
    ] = None,
) -> None:
    """Compute point-in-time features for every (customer, cutoff) in the labels."""
    from churn.stages.features import run_features

    _run(
        run_features,
        params=_load(params, {"features.engine": engine}),
        validated_dir=validated,
        labels_path=labels,
        out_path=out,
        catalog_path=catalog,
        scoring_out=scoring_out,
    )


@app.command()
def train(
    params: ParamsOpt,
    features: FeaturesOpt,
    catalog: CatalogOpt,
    model_dir: Annotated[
        Path,
        typer.Option(help="Directory for the exported champion (scoring without a registry)."),
    ],
    report: Annotated[Path, typer.Option(help="JSON summary of the training run.")],
    challenger_dir: Annotated[
        Path,
        typer.Option(
            help="Directory for a model the gate refused (kept for inspection, never scored)."
        ),
    ],
    model_record: Annotated[
        Path,
        typer.Option(help="JSON naming the model later stages use (the champion after the gate)."),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labels from 'churn label' (with the churn time): also fit the survival head "
            "(docs/survival.md)."
        ),
    ] = None,
) -> None:
    """Train LightGBM and a baseline out of time, calibrate, log to MLflow, gate the champion."""
    from churn.stages.train import run_train

    _run(
        run_train,
        params=_load(params),
        features_path=features,
        model_dir=model_dir,
        report_path=report,
        catalog_path=catalog,
        challenger_dir=challenger_dir,
        model_record_path=model_record,
        labels_path=labels,
    )


@app.command()
def evaluate(
    params: ParamsOpt,
    features: FeaturesOpt,
    model_dir: ModelDirOpt,
    metrics: Annotated[Path, typer.Option(help="Nested metrics JSON for 'dvc metrics'.")],
    plots_dir: Annotated[Path, typer.Option(help="Plot data directory for 'dvc plots'.")],
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Simulator ground truth directory (optional): oracle metrics when it holds "
            "the truth (with data.source 'files' it holds only a marker)."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labels from 'churn label' (with the churn time): survival head metrics per "
            "horizon and both model forms compared (optional)."
        ),
    ] = None,
) -> None:
    """Evaluate on the held-out cutoff: discrimination, calibration, lift, backtest."""
    from churn.stages.evaluate import run_evaluate

    _run(
        run_evaluate,
        params=_load(params),
        features_path=features,
        model_dir=model_dir,
        truth_dir=truth,
        metrics_path=metrics,
        plots_dir=plots_dir,
        labels_path=labels,
    )


@app.command()
def score(
    params: ParamsOpt,
    model: Annotated[
        str,
        typer.Option(
            help="Model: an exported model directory or an MLflow URI "
            "(e.g. models:/churn@champion)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Scores file (Parquet, or CSV with --format csv).")],
    validated: Annotated[
        Path | None,
        typer.Option(help="Directory of validated tables (the DVC pipeline's ingest output)."),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Entity mode: a new customer file (CSV or Parquet) to validate and score "
            "instead of --validated; its label column is optional (realized metrics if present).",
        ),
    ] = None,
    raw_input: Annotated[
        Path | None,
        typer.Option(
            help="Events mode: a new raw folder to validate and score at --cutoff instead of "
            "--validated; bad rows go to quarantine.parquet beside --out.",
        ),
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option(help="Override score.cutoff (YYYY-MM-DD); default: the data's end."),
    ] = None,
    previous: Annotated[
        Path | None,
        typer.Option(help="Earlier scores file to compare with (what changed since)."),
    ] = None,
    output_format: Annotated[
        str | None, typer.Option("--format", help="Override score.output_format: parquet|csv.")
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="Override features.engine: 'local' or 'spark'.")
    ] = None,
    scoring_features: Annotated[
        Path | None,
        typer.Option(
            help="With --validated: the scoring rows of 'churn features --scoring-out', used "
            "when computed from the same tables and configuration at the same cutoff."
        ),
    ] = None,
) -> None:
    """Score every customer active at the cutoff, with reasons and revenue at risk.

    Give exactly one of --validated (pipeline output), --input (entity mode: a new file) or
    --raw-input (events mode: a new raw folder); new data is validated like 'churn ingest'.
    """
    from churn.stages.score import run_score

    overrides = {
        "score.cutoff": cutoff,
        "score.output_format": output_format,
        "features.engine": engine,
    }
    _run(
        run_score,
        params=_load(params, overrides),
        validated_dir=validated,
        model_uri=model,
        out_path=out,
        previous_path=previous,
        input_path=input_file,
        raw_dir=raw_input,
        scoring_features=scoring_features,
    )


@app.command()
def explain(
    params: ParamsOpt,
    features: FeaturesOpt,
    model_dir: ModelDirOpt,
    out_dir: Annotated[Path, typer.Option(help="Directory for explanation PNGs and tables.")],
) -> None:
    """Global explanations: SHAP beeswarm, bar, family and journey-phase shares, dependence."""
    from churn.stages.explain import run_explain

    _run(
        run_explain,
        params=_load(params),
        features_path=features,
        model_dir=model_dir,
        out_dir=out_dir,
    )


@app.command()
def target(
    params: ParamsOpt,
    scores: Annotated[Path, typer.Option(help="Scores file from 'churn score'.")],
    catalog: CatalogOpt,
    validated: Annotated[
        Path, typer.Option(help="Validated tables (retention_actions is optional).")
    ],
    labels: LabelsOpt,
    features: FeaturesOpt,
    model_dir: ModelDirOpt,
    out_dir: Annotated[Path, typer.Option(help="Folder for targets, candidates and curves.")],
    contacts: Annotated[Path, typer.Option(help="CRM-ready CSV of this week's contacts.")],
    report: Annotated[Path, typer.Option(help="Target JSON for 'dvc metrics'.")],
    truth: Annotated[
        Path | None,
        typer.Option(help="Simulator ground truth directory (optional): policy comparison."),
    ] = None,
) -> None:
    """Whom to contact this week with which play, by expected saved revenue under capacity."""
    from churn.stages.target import run_target

    _run(
        run_target,
        params=_load(params),
        scores_path=scores,
        catalog_path=catalog,
        validated_dir=validated,
        labels_path=labels,
        features_path=features,
        model_dir=model_dir,
        truth_dir=truth,
        out_dir=out_dir,
        contacts_path=contacts,
        metrics_path=report,
    )


@app.command()
def report(
    params: ParamsOpt,
    ingest_report: Annotated[Path, typer.Option(help="JSON report from 'churn ingest'.")],
    train_report: Annotated[Path, typer.Option(help="JSON report from 'churn train'.")],
    model_record: Annotated[
        Path, typer.Option(help="Record of the model later stages used, from 'churn train'.")
    ],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON from 'churn evaluate'.")],
    plots_dir: Annotated[Path, typer.Option(help="Plot data directory from 'churn evaluate'.")],
    explain_dir: Annotated[Path, typer.Option(help="Output directory of 'churn explain'.")],
    catalog: CatalogOpt,
    labels: LabelsOpt,
    scores: Annotated[
        Path, typer.Option(help="Scores file from 'churn score' (its changes file is read too).")
    ],
    out: Annotated[Path, typer.Option(help="Self-contained HTML report.")],
    validated: Annotated[
        Path | None,
        typer.Option(help="Validated tables (optional): segment the scores by customer fields."),
    ] = None,
    data_check: Annotated[
        Path | None,
        typer.Option(help="Data check JSON from 'churn ingest' (optional): a Data check section."),
    ] = None,
    monitor: Annotated[
        Path | None,
        typer.Option(help="Monitor JSON from 'churn monitor' (optional): a Model health section."),
    ] = None,
    target_report: Annotated[
        Path | None,
        typer.Option(help="JSON from 'churn target' (optional, with --targets-dir)."),
    ] = None,
    targets_dir: Annotated[
        Path | None,
        typer.Option(help="Output folder of 'churn target' (optional): who to contact."),
    ] = None,
) -> None:
    """Write the self-contained HTML report for analysts."""
    from churn.layout import table_file_name
    from churn.report.inputs import ReportPaths
    from churn.stages.report import run_report

    paths = ReportPaths(
        ingest_report=ingest_report,
        train_report=train_report,
        model_record=model_record,
        metrics=metrics,
        plots_dir=plots_dir,
        explain_dir=explain_dir,
        catalog=catalog,
        labels=labels,
        scores=scores,
        customers=None if validated is None else validated / table_file_name("customers"),
        data_check=data_check,
        monitor=monitor,
        target_report=target_report,
        targets_dir=targets_dir,
    )
    _run(run_report, params=_load(params), inputs_paths=paths, out_path=out)


@app.command()
def monitor(
    params: ParamsOpt,
    features: FeaturesOpt,
    labels: LabelsOpt,
    labels_report: Annotated[
        Path, typer.Option(help="JSON report of 'churn label' (its data_end closes horizons).")
    ],
    model_dir: Annotated[Path, typer.Option(help="Exported champion directory.")],
    scores: Annotated[
        Path, typer.Option(help="Scores file from 'churn score' (its features sidecar is read).")
    ],
    history: Annotated[Path, typer.Option(help="Score history folder (kept between runs).")],
    out: Annotated[Path, typer.Option(help="Monitor JSON: status, reasons, drift, performance.")],
    fail_on: Annotated[
        str | None,
        typer.Option(help="Exit with code 1 when the status reaches this level: retrain | warn."),
    ] = None,
) -> None:
    """Watch the champion: drift, estimated and realized performance, and an ok/warn/retrain status.

    With --fail-on the exit code tells a scheduler to act: 1 when the status reaches the level,
    2 on bad input, 0 otherwise (the report and history are written in every case but 2).
    """
    from churn.monitoring.status import STATUS_ORDER, reaches
    from churn.stages.monitor import run_monitor

    if fail_on is not None and fail_on not in STATUS_ORDER[1:]:
        _fail(f"--fail-on must be one of {list(STATUS_ORDER[1:])}, got {fail_on!r}")
    outcome: dict[str, Any] = {}
    _run(
        lambda **kw: outcome.update(run_monitor(**kw)),
        params=_load(params),
        features_path=features,
        labels_path=labels,
        labels_report=labels_report,
        model_dir=model_dir,
        scores_path=scores,
        history_dir=history,
        out_path=out,
    )
    typer.echo(f"status: {outcome['status']}")
    for reason in outcome["reasons"][:10]:
        typer.echo(f"  [{reason['level']}] {reason['message']}")
    if fail_on is not None and reaches(outcome["status"], fail_on):
        raise typer.Exit(code=1)


@app.command()
def contract(
    out: Annotated[
        Path | None, typer.Option(help="Write the Markdown here instead of printing it.")
    ] = None,
) -> None:
    """Print (or write) the data contract: tables, columns, types and rules."""
    from churn.domain.contract import render_contract_markdown
    from churn.io import write_text

    text = render_contract_markdown()
    if out is None:
        typer.echo(text)
    else:
        write_text(text, out)


@app.command("check-params")
def check_params(params: ParamsOpt) -> None:
    """Validate params.yaml and print the effective configuration."""
    p = _load(params)
    typer.echo(p.model_dump_json(indent=2))
