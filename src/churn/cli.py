"""The ``churn`` command line: one subcommand per pipeline stage.

Each subcommand is a thin shell over the stage's runner (``churn.<stage>.run_<stage>``), which
does the I/O around a pure core. Paths are options (``dvc.yaml`` passes them); knobs come from
``params.yaml``. Stage modules are imported inside the commands so that ``churn --help`` stays
fast and importing the CLI has no side effects.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated

import typer

from churn.config import ConfigError, load_params

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


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    _setup_logging(verbose)


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/bold red] {message}", highlight=False)
    raise typer.Exit(code=2)


def _load(params: Path):
    try:
        return load_params(params)
    except ConfigError as exc:
        _fail(str(exc))


def _run(func, /, **kwargs) -> None:
    """Call a runner, turning user-fixable errors into a clean message and exit code 2."""
    from churn.errors import ChurnError

    try:
        func(**kwargs)
    except (ChurnError, ConfigError) as exc:
        _fail(str(exc))


@app.command()
def simulate(
    params: ParamsOpt = Path("params.yaml"),
    out: Annotated[
        Path, typer.Option(help="Directory for the raw contract tables (Parquet).")
    ] = Path("data/raw"),
    truth: Annotated[
        Path, typer.Option(help="Directory for the ground truth (never read by training).")
    ] = Path("data/truth"),
    customers: Annotated[int | None, typer.Option(help="Override simulate.customers.")] = None,
    months: Annotated[int | None, typer.Option(help="Override simulate.months.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override simulate.seed.")] = None,
) -> None:
    """Simulate a subscription business: raw contract tables plus ground truth."""
    from churn.stages.simulate.engine import run_simulate

    cfg = _load(params).simulate
    overrides = {
        k: v
        for k, v in {"customers": customers, "months": months, "seed": seed}.items()
        if v is not None
    }
    if overrides:
        cfg = cfg.model_copy(update=overrides)
    _run(run_simulate, config=cfg, out_dir=out, truth_dir=truth)


@app.command()
def ingest(
    params: ParamsOpt = Path("params.yaml"),
    raw: Annotated[
        Path, typer.Option(help="Directory with the raw tables (CSV or Parquet).")
    ] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Directory for validated tables.")] = Path(
        "data/validated"
    ),
    quarantine: Annotated[
        Path, typer.Option(help="Directory for quarantined rows, with the failed rule per row.")
    ] = Path("data/quarantine"),
    report: Annotated[Path, typer.Option(help="JSON report: rows in, valid, quarantined.")] = Path(
        "reports/ingest.json"
    ),
) -> None:
    """Validate raw tables against the data contract; quarantine bad rows."""
    from churn.stages.ingest import run_ingest

    _run(
        run_ingest,
        config=_load(params).ingest,
        raw_dir=raw,
        out_dir=out,
        quarantine_dir=quarantine,
        report_path=report,
    )


@app.command()
def label(
    params: ParamsOpt = Path("params.yaml"),
    validated: Annotated[Path, typer.Option(help="Directory of validated tables.")] = Path(
        "data/validated"
    ),
    out: Annotated[
        Path, typer.Option(help="Labels Parquet: one row per customer and cutoff.")
    ] = Path("data/labels/labels.parquet"),
    report: Annotated[
        Path,
        typer.Option(help="JSON report: per cutoff population, churners, rate, why unlabeled."),
    ] = Path("reports/labels.json"),
) -> None:
    """Build point-in-time labels over the cutoff schedule and check their churn rates."""
    from churn.stages.label import run_label

    p = _load(params)
    _run(run_label, params=p, validated_dir=validated, out_path=out, report_path=report)


@app.command()
def features(
    params: ParamsOpt = Path("params.yaml"),
    validated: Annotated[Path, typer.Option(help="Directory of validated tables.")] = Path(
        "data/validated"
    ),
    labels: Annotated[Path, typer.Option(help="Labels Parquet from 'churn label'.")] = Path(
        "data/labels/labels.parquet"
    ),
    out: Annotated[Path, typer.Option(help="Feature table Parquet.")] = Path(
        "data/features/features.parquet"
    ),
    catalog: Annotated[Path, typer.Option(help="Feature catalog CSV.")] = Path(
        "reports/feature_catalog.csv"
    ),
    engine: Annotated[
        str | None, typer.Option(help="Override features.engine: 'local' (DuckDB) or 'spark'.")
    ] = None,
) -> None:
    """Compute point-in-time features for every (customer, cutoff) in the labels."""
    from churn.stages.features import run_features

    p = _load(params)
    if engine:
        if engine not in ("local", "spark"):
            _fail(f"--engine must be 'local' or 'spark', got {engine!r}")
        p = p.model_copy(update={"features": p.features.model_copy(update={"engine": engine})})
    _run(
        run_features,
        params=p,
        validated_dir=validated,
        labels_path=labels,
        out_path=out,
        catalog_path=catalog,
    )


@app.command()
def train(
    challenger_dir: Annotated[
        Path,
        typer.Option(
            help="Directory for a model the gate refused (kept for inspection, never scored)."
        ),
    ],
    model_record: Annotated[
        Path,
        typer.Option(
            help="JSON naming the model later stages use (the champion after the gate)."
        ),
    ],
    params: ParamsOpt = Path("params.yaml"),
    features: Annotated[Path, typer.Option(help="Feature table from 'churn features'.")] = Path(
        "data/features/features.parquet"
    ),
    model_dir: Annotated[
        Path,
        typer.Option(help="Directory for the exported champion (scoring without a registry)."),
    ] = Path("models/churn"),
    report: Annotated[Path, typer.Option(help="JSON summary of the training run.")] = Path(
        "reports/train.json"
    ),
    catalog: Annotated[
        Path, typer.Option(help="Feature catalog CSV from 'churn features'.")
    ] = Path("reports/feature_catalog.csv"),
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
    )


@app.command()
def evaluate(
    params: ParamsOpt = Path("params.yaml"),
    features: Annotated[Path, typer.Option(help="Feature table from 'churn features'.")] = Path(
        "data/features/features.parquet"
    ),
    model_dir: Annotated[Path, typer.Option(help="Exported model directory.")] = Path(
        "models/churn"
    ),
    truth: Annotated[
        Path | None,
        typer.Option(help="Simulator ground truth directory (optional) for oracle metrics."),
    ] = None,
    metrics: Annotated[Path, typer.Option(help="Nested metrics JSON for 'dvc metrics'.")] = Path(
        "reports/metrics.json"
    ),
    plots_dir: Annotated[Path, typer.Option(help="Plot data directory for 'dvc plots'.")] = Path(
        "reports/plots"
    ),
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
    )


@app.command()
def score(
    params: ParamsOpt = Path("params.yaml"),
    validated: Annotated[Path, typer.Option(help="Directory of validated tables.")] = Path(
        "data/validated"
    ),
    model: Annotated[
        str,
        typer.Option(help="Model: an exported model directory or an MLflow URI."),
    ] = "models:/churn@champion",
    cutoff: Annotated[
        str | None,
        typer.Option(help="Cutoff date (YYYY-MM-DD); default score.cutoff or the data's end."),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Scores file (Parquet, or CSV with --format csv).")
    ] = Path("data/scores/scores.parquet"),
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
) -> None:
    """Score every customer active at the cutoff, with reasons and revenue at risk."""
    from churn.stages.score import run_score

    p = _load(params)
    updates = {}
    if cutoff:
        try:
            updates["cutoff"] = dt.date.fromisoformat(cutoff)
        except ValueError:
            _fail(f"--cutoff must be YYYY-MM-DD, got {cutoff!r}")
    if output_format:
        if output_format not in ("parquet", "csv"):
            _fail(f"--format must be 'parquet' or 'csv', got {output_format!r}")
        updates["output_format"] = output_format
    if updates:
        p = p.model_copy(update={"score": p.score.model_copy(update=updates)})
    if engine:
        if engine not in ("local", "spark"):
            _fail(f"--engine must be 'local' or 'spark', got {engine!r}")
        p = p.model_copy(update={"features": p.features.model_copy(update={"engine": engine})})
    _run(
        run_score,
        params=p,
        validated_dir=validated,
        model_uri=model,
        out_path=out,
        previous_path=previous,
    )


@app.command()
def explain(
    params: ParamsOpt = Path("params.yaml"),
    features: Annotated[Path, typer.Option(help="Feature table from 'churn features'.")] = Path(
        "data/features/features.parquet"
    ),
    model_dir: Annotated[Path, typer.Option(help="Exported model directory.")] = Path(
        "models/churn"
    ),
    out_dir: Annotated[
        Path, typer.Option(help="Directory for explanation PNGs and tables.")
    ] = Path("reports/explain"),
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
def report(
    params: ParamsOpt = Path("params.yaml"),
    reports_dir: Annotated[Path, typer.Option(help="Directory with stage reports.")] = Path(
        "reports"
    ),
    labels: Annotated[Path, typer.Option(help="Labels Parquet.")] = Path(
        "data/labels/labels.parquet"
    ),
    scores: Annotated[Path, typer.Option(help="Scores file from 'churn score'.")] = Path(
        "data/scores/scores.parquet"
    ),
    out: Annotated[Path, typer.Option(help="Self-contained HTML report.")] = Path(
        "reports/index.html"
    ),
    validated: Annotated[
        Path | None,
        typer.Option(help="Validated tables (optional): segment the scores by customer fields."),
    ] = None,
) -> None:
    """Write the self-contained HTML report for analysts."""
    from churn.stages.report import run_report

    _run(
        run_report,
        params=_load(params),
        reports_dir=reports_dir,
        labels_path=labels,
        scores_path=scores,
        out_path=out,
        validated_dir=validated,
    )


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
def check_params(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml and print the effective configuration."""
    p = _load(params)
    typer.echo(p.model_dump_json(indent=2))
