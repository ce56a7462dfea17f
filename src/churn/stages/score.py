"""The ``churn score`` stage: build point-in-time features at a cutoff, score, write atomically."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churn.domain.catalog import ineligible_features
from churn.domain.modes import Mode, reference_date
from churn.errors import DataContractError, EmptyPopulationError
from churn.io import (
    atomic_directory,
    read_tables,
    write_json,
    write_parquet,
    write_table,
)
from churn.layout import CHANGES_SUFFIX, CONTRIBUTIONS_SUFFIX, FEATURES_SUFFIX, sidecar_path
from churn.model.artifact import ChurnModel
from churn.model.changes import (
    compare_scores,
    find_previous_scores,
    read_previous_features,
    read_previous_scores,
)
from churn.model.horizon_scoring import add_horizon_columns_if_fitted, score_with_model_form
from churn.model.reasons import build_feature_specs
from churn.model.scoring import MOVED_FEATURES, finalize_scores
from churn.stages.scoring_population import (
    POPULATION_TABLES,
    build_population,
    choose_cutoff,
    describe_scoring_inputs,
    lacks_mrr,
    read_scoring_rows,
)
from churn.tracking.loading import open_model_folder

if TYPE_CHECKING:
    from churn.config import Params
    from churn.stages.ingest import IngestResult

logger = logging.getLogger(__name__)


def read_scoring_tables(params: Params, validated_dir: Path) -> dict[str, pd.DataFrame | Path]:
    """Return the validated tables scoring reads: the population's in pandas, the rest as paths.

    As in the features stage (:func:`churn.stages.features.read_feature_tables`), the local
    engine in events mode lets DuckDB scan the event tables' files, so the usage events never
    exist whole in pandas; the tables the population is built from (customers, subscriptions
    and their changes) are read into pandas. The Spark engine and entity mode get frames.
    """
    from churn.stages.features import read_feature_tables

    tables = read_feature_tables(params, validated_dir)
    population_tables = [n for n in POPULATION_TABLES if isinstance(tables.get(n), Path)]
    tables.update(read_tables(validated_dir, population_tables))
    return tables


def build_scoring_features(
    tables: Mapping[str, pd.DataFrame | Path], cutoff: pd.Timestamp, params: Params
) -> pd.DataFrame:
    """Build the features of every customer in the population at ``cutoff``.

    The feature stage's own table selection and engine dispatch are used (local DuckDB or
    Spark, per ``features.engine``), so scoring features are computed exactly like training
    features.

    Raises:
        EmptyPopulationError: If no customer is in the population at the cutoff.
        ChurnError: If the Spark engine is requested but unavailable.
    """
    from churn.stages.features import compute_features

    population = build_population(tables, cutoff, params)
    if population.empty:
        raise EmptyPopulationError(
            f"no customer is active at the cutoff {cutoff:%Y-%m-%d}, so there is nothing to "
            "score and no file was written; check --cutoff / score.cutoff against the data"
        )
    result = compute_features(params, dict(tables), population)
    for family, reason in result.skipped.items():
        logger.warning("features %s skipped: %s", family, reason)
    # The Spark engine returns a lazy Spark frame; collecting it runs the job.
    frame = result.frame if isinstance(result.frame, pd.DataFrame) else result.to_pandas()
    if lacks_mrr(frame.columns) and "mrr" in population:
        keys = ["customer_id", "cutoff"]
        frame = frame.merge(population[[*keys, "mrr"]], on=keys, how="left", validate="1:1")
    return frame


QUARANTINE_FILE = "quarantine.parquet"
"""Rows of a new input that failed validation, written beside the scores (``--input``)."""
REALIZED_METRICS_FILE = "realized_metrics.json"
"""Metrics against a label column the new input carried, written beside the scores."""


def validate_new_data(
    params: Params, input_path: str | Path | None = None, raw_dir: str | Path | None = None
) -> IngestResult:
    """Validate a new file (entity mode) or raw folder (events mode) in memory, as ingest does.

    The configured ``ingest`` section (mapping, value codes, time zone, quarantine limit)
    applies unchanged, so a file that ingest accepts scores the same way. Decision: in entity
    mode the label column is optional (new customers have no outcome yet); when present it is
    validated like in ingest and kept for realized metrics.

    Args:
        params: Pipeline parameters (``ingest`` section; ``features.customer_attributes``).
        input_path: Entity mode: one customer table (CSV or Parquet).
        raw_dir: Events mode: a raw folder laid out like ingest's input.

    Returns:
        The valid and quarantined rows per table and the validation report.

    Raises:
        DataContractError: If the input is missing or of the wrong mode, a required column is
            missing, or too many rows fail validation.
    """
    from churn.domain.modes import reference_timestamp
    from churn.io import read_frame
    from churn.stages.ingest import read_raw_tables, validate_tables

    cfg = params.ingest
    entity = cfg.mode is Mode.ENTITY
    if input_path is not None:
        if not entity:
            raise DataContractError(
                "--input scores one customer table and needs ingest.mode: entity; in events "
                "mode pass a raw folder with --raw-input DIR"
            )
        path = Path(input_path)
        if not path.exists():
            raise DataContractError(f"scoring input {path} does not exist")
        try:
            frames = {"customers": read_frame(path)}
        except (ValueError, OSError) as exc:
            raise DataContractError(f"cannot read the scoring input {path}: {exc}") from exc
    elif raw_dir is not None:
        frames, _ = read_raw_tables(Path(raw_dir), cfg)
    else:
        raise DataContractError("nothing to validate: pass --input FILE or --raw-input DIR")
    return validate_tables(
        frames,
        cfg,
        reference_timestamp(cfg.as_of),
        customer_attributes=params.features.customer_attributes,
        label_required=not entity,
    )


def stack_quarantine(quarantine: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Return every table's quarantined rows in one frame, with a ``_table`` column first.

    Tables have different columns, so values are kept as text (as read); ``_row_number`` (the
    row's 0-based position in its table's input) stays an integer.
    """
    from churn.stages.ingest import ROW_NUMBER

    parts = [
        frame.astype("object").assign(_table=name)
        for name, frame in quarantine.items()
        if len(frame)
    ]
    if not parts:
        return pd.DataFrame({"_table": pd.Series(dtype="str")})
    stacked = pd.concat(parts, ignore_index=True)
    text = stacked.drop(columns=["_table", ROW_NUMBER]).astype("string")
    rows = stacked[ROW_NUMBER].astype("int64")
    return pd.concat([stacked[["_table"]], text, rows], axis=1)


def compute_realized_metrics(labels: pd.Series, probabilities: pd.Series) -> dict[str, Any]:
    """Return ROC AUC, PR AUC, top-decile lift and base rate of scores against known labels.

    Rows with a missing label are left out (and counted). Metrics that need both classes are
    ``NaN`` (``null`` in JSON) when one class is absent.
    """
    from churn.model.metrics import (
        TOP_DECILE,
        compute_lift,
        compute_pr_auc,
        compute_roc_auc,
        make_jsonable,
    )

    known = labels.notna().to_numpy()
    y = labels[known].astype("int64").to_numpy()
    p = probabilities[known].astype("float64").to_numpy()
    return make_jsonable(
        {
            "rows": int(known.sum()),
            "rows_without_label": int((~known).sum()),
            "positives": int(y.sum()),
            "base_rate": float(y.mean()) if y.size else float("nan"),
            "roc_auc": compute_roc_auc(y, p),
            "pr_auc": compute_pr_auc(y, p),
            "lift_top_decile": compute_lift(y, p, TOP_DECILE),
        }
    )


def run_score(
    params: Params,
    validated_dir: str | Path | None,
    model_uri: str | Path,
    out_path: str | Path,
    previous_path: str | Path | None = None,
    *,
    input_path: str | Path | None = None,
    raw_dir: str | Path | None = None,
    scoring_features: str | Path | None = None,
) -> dict[str, Any]:
    """Score every customer active at the cutoff and write scores, contributions and changes.

    Files (written as one unit into a staging folder beside ``out_path``'s folder and swapped
    in whole, only after everything was computed; see :func:`churn.io.atomic_directory`):

    * ``out_path``: :func:`score_frame` columns plus ``risk_decile``, sorted by
      ``expected_revenue_at_risk`` (Parquet or CSV per ``score.output_format``).
    * ``<stem>_contributions.parquet`` beside it: every feature's contribution per customer.
    * ``<stem>_features.parquet`` beside it: the model's feature values per customer, as scored
      (``churn monitor`` measures their drift).
    * ``<stem>_changes.parquet`` beside it (see :func:`churn.model.changes.compare_scores`), when an
      earlier scoring exists: ``previous_path`` if given (a missing file is logged and skipped),
      else the scores already at ``out_path`` before they are replaced, so a nightly job that
      overwrites one file reports what changed since the last night.
    * New data only (``input_path`` or ``raw_dir``): :data:`QUARANTINE_FILE` beside it, the
      rows that failed validation (``_table``, the row as read, ``_row_number``,
      ``_failed_rules``; empty when none failed), and, in entity mode when the input carried
      the label column, :data:`REALIZED_METRICS_FILE`.

    Args:
        params: Pipeline parameters (``score``, ``label``, ``features`` sections).
        validated_dir: Directory of validated tables (``None`` when scoring new data).
        model_uri: Exported model directory or MLflow URI (see :func:`load_model`); a URI's
            export folder is downloaded once for the run, survival head included, so the
            horizon columns come with either.
        out_path: Scores file.
        previous_path: Earlier scores file to compare with, or ``None``.
        input_path: Entity mode: a new customer file (CSV or Parquet), validated in memory.
        raw_dir: Events mode: a new raw folder, validated in memory.
        scoring_features: With ``validated_dir``: the features stage's scoring rows
            (``churn features --scoring-out``), used instead of computing the population's
            features when they were computed from the same validated tables and configuration
            at the same cutoff (:func:`churn.stages.scoring_population.read_scoring_rows`);
            otherwise the features are computed here, and the log says why.

    Returns:
        A summary: cutoff, rows, output paths, seconds (and quarantined rows, realized metrics).

    Raises:
        EmptyPopulationError: If nobody is active at the cutoff; no file is touched.
        DataContractError: If not exactly one source of data is given, or the data is invalid.
    """
    with open_model_folder(model_uri) as model_folder:
        return _score_and_write(
            params,
            validated_dir,
            model_folder,
            out_path,
            previous_path,
            input_path=input_path,
            raw_dir=raw_dir,
            scoring_features=scoring_features,
        )


def _score_and_write(
    params: Params,
    validated_dir: str | Path | None,
    model_folder: Path,
    out_path: str | Path,
    previous_path: str | Path | None,
    *,
    input_path: str | Path | None,
    raw_dir: str | Path | None,
    scoring_features: str | Path | None = None,
) -> dict[str, Any]:
    """:func:`run_score` with the model's files in a local folder."""
    started = time.perf_counter()
    out_path = Path(out_path)
    sources = [s for s in (validated_dir, input_path, raw_dir) if s is not None]
    if len(sources) != 1:
        raise DataContractError(
            "score needs exactly one of --validated DIR, --input FILE or --raw-input DIR"
        )
    model = ChurnModel.load(model_folder)
    quarantine: pd.DataFrame | None = None
    if validated_dir is not None:
        tables = read_scoring_tables(params, Path(validated_dir))
        if not tables:
            raise DataContractError(f"no validated tables in {validated_dir}; run 'churn ingest'")
    else:
        checked = validate_new_data(params, input_path, raw_dir)
        tables = checked.valid
        quarantine = stack_quarantine(checked.quarantine)
        logger.info(
            "new data: %d rows in, %d valid, %d quarantined -> %s",
            checked.report["rows_in"],
            checked.report["rows_valid"],
            checked.report["rows_quarantined"],
            out_path.parent / QUARANTINE_FILE,
        )
    label_column = params.ingest.label_column
    customers = tables.get("customers")
    # numba compiles the kernels (TreeSHAP; prediction for the survival head's horizons) while
    # the population and its features are built (DuckDB and Arrow run without the GIL) instead
    # of at the first batch's explanation. The customer table bounds the population from above:
    # at worst a run just over the size that needs the kernels compiles them for nothing.
    if isinstance(customers, pd.DataFrame):
        model.start_compiling(len(customers))
    realized_labels = (
        customers.set_index(customers["customer_id"].astype("str"))[label_column]
        if input_path is not None and customers is not None and label_column in customers
        else None
    )
    from churn.stages.features import pin_model_usage_event_types, prepare_tables

    tables = prepare_tables(params, tables)
    # The scoring rows' fingerprint covers the configuration as given, before the pin below.
    fingerprint = None
    if scoring_features is not None:
        if validated_dir is None:
            logger.info("--scoring-features ignored: the rows are for --validated tables only")
        else:
            fingerprint = describe_scoring_inputs(params, Path(validated_dir))
    params = pin_model_usage_event_types(params, model.feature_names, tables)
    entity = params.ingest.mode is Mode.ENTITY
    as_of = reference_date(params.ingest.as_of) if entity else None
    cutoff = choose_cutoff(tables, params.score.cutoff, as_of)
    features = None
    if fingerprint is not None:
        assert scoring_features is not None
        features, note = read_scoring_rows(
            Path(scoring_features), fingerprint, cutoff, model.feature_names
        )
        if features is None:
            logger.info("features computed here, not the features stage's scoring rows: %s", note)
        else:
            logger.info(
                "features of %d customers: the features stage's scoring rows, %s",
                len(features),
                note,
            )
    if features is None:
        features = build_scoring_features(tables, cutoff, params)
    duplicated = features.loc[features["customer_id"].duplicated(), "customer_id"]
    if len(duplicated):  # one row per customer, or rankings and changes would double count
        raise DataContractError(f"customers appear twice in the population: {list(duplicated[:5])}")
    result = score_with_model_form(model, features, model_folder, params)
    scores = finalize_scores(
        add_horizon_columns_if_fitted(result.scores, features, model_folder, params)
    )
    previous = find_previous_scores(previous_path, out_path)
    changes = None
    if previous is not None:
        before, before_contributions = read_previous_scores(previous)
        changes = compare_scores(
            scores,
            before,
            result.contributions,
            before_contributions,
            top=MOVED_FEATURES,
            ineligible=ineligible_features(model.catalog),
            # The feature values of both runs word what changed ("... rose from 0 to 4").
            current_features=features[["customer_id", *model.feature_names]],
            previous_features=read_previous_features(previous, before),
            specs=build_feature_specs(
                model.catalog, model.feature_names, model.categorical_levels
            ),
        )

    contributions_path = sidecar_path(out_path, CONTRIBUTIONS_SUFFIX)
    changes_path = sidecar_path(out_path, CHANGES_SUFFIX)
    # The model's inputs as scored, for drift monitoring (``churn monitor``).
    features_path = sidecar_path(out_path, FEATURES_SUFFIX)
    scored_features = features[["customer_id", "cutoff", *model.feature_names]]
    realized = None
    if realized_labels is not None:
        labels = scores["customer_id"].astype("str").map(realized_labels)
        realized = compute_realized_metrics(labels, scores["churn_probability"])
        logger.info(
            "realized metrics on %d labelled rows: ROC AUC %s, PR AUC %s, lift@10%% %s, "
            "base rate %s",
            realized["rows"],
            realized["roc_auc"],
            realized["pr_auc"],
            realized["lift_top_decile"],
            realized["base_rate"],
        )
    replaced = {out_path.name, contributions_path.name, changes_path.name, features_path.name}
    if quarantine is not None:
        replaced |= {QUARANTINE_FILE, REALIZED_METRICS_FILE}
    # Scores, contributions and changes are one unit: staged beside the scores folder and
    # swapped in whole (other files in it are carried over), so a kill never leaves new
    # contributions beside old scores. Without a previous scoring there are no changes, and a
    # changes file of an older run would describe other scores: it is not carried over.
    with atomic_directory(out_path.parent, keep_existing=True, skip=replaced) as staging:
        write_parquet(result.contributions, staging / contributions_path.name)
        write_parquet(scored_features, staging / features_path.name)
        if changes is not None:
            write_parquet(changes, staging / changes_path.name)
        write_table(scores, staging / out_path.name, params.score.output_format)
        if quarantine is not None:
            write_parquet(quarantine, staging / QUARANTINE_FILE)
        if realized is not None:
            write_json(realized, staging / REALIZED_METRICS_FILE)
    summary = {
        "cutoff": cutoff.isoformat(),
        "rows": len(scores),
        "scores": str(out_path),
        "contributions": str(contributions_path),
        "changes": None if changes is None else str(changes_path),
        "previous": None if previous is None else str(previous),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if quarantine is not None:
        summary["quarantine"] = str(out_path.parent / QUARANTINE_FILE)
        summary["rows_quarantined"] = len(quarantine)
    if realized is not None:
        summary["realized_metrics"] = realized
    logger.info("scored %d customers at %s -> %s", len(scores), cutoff.date(), out_path)
    return summary
