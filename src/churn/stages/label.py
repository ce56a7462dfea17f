"""The ``churn label`` stage: read validated tables, build labels, write them."""

from __future__ import annotations

import logging
from pathlib import Path

from churn.config import Params
from churn.console import log_table
from churn.domain.contract import CONTRACT
from churn.domain.modes import Mode, reference_date
from churn.errors import DataContractError
from churn.io import read_tables, write_parquet
from churn.labels.build import build_entity_labels, build_labels, summarize_labels

logger = logging.getLogger(__name__)


def run_label(params: Params, validated_dir: Path, out_path: Path) -> None:
    """Read validated tables, build labels, log a summary and write them atomically.

    Args:
        params: All parameters (``ingest.mode`` picks events or entity mode).
        validated_dir: Directory of validated tables.
        out_path: Labels Parquet file.

    Raises:
        DataContractError: If a required table or column is missing.
        EmptyPopulationError: If no customer is in any population.
    """
    tables = read_tables(validated_dir, list(CONTRACT))
    if params.ingest.mode is Mode.ENTITY:
        if "customers" not in tables:
            raise DataContractError(f"entity mode: no customers table in {validated_dir}")
        as_of = reference_date(params.ingest.as_of)
        labels = build_entity_labels(tables["customers"], params.ingest.label_column, as_of)
        logger.info("entity mode: one cutoff (%s) for %d customers", as_of, len(labels))
    else:
        labels = build_labels(tables, params.label)
    summary = summarize_labels(labels)
    log_table(
        logger,
        f"labels: {len(labels):,} rows over {len(summary)} cutoff(s)",
        ["cutoff", "customers", "churned", "label rate"],
        [
            (
                cutoff.date(),
                f"{int(row.customers):,}",
                "-" if row.observed == 0 else f"{int(row.churned):,}",
                "unobserved (scoring)" if row.observed == 0 else f"{row.label_rate:.2%}",
            )
            for cutoff, row in summary.iterrows()
        ],
    )
    write_parquet(labels, out_path)
    logger.info("wrote %s", out_path)
