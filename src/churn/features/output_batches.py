"""The output batches of :func:`churn.features.build.write_features`, and the in-memory frame.

A batch is the family rows of ``batch_rows`` population rows (:func:`read_feature_batches`)
with the key columns beside them (:func:`build_key_frame`). The first batch of a file is
assembled through pandas (:func:`assemble_in_pandas`: its schema, pandas' metadata included,
is the file's); the later ones in Arrow with the same arrays (:func:`assemble_in_arrow`, the
conversion in :mod:`churn.features.output_arrow`) once :func:`check_arrow_route` has found the
two routes equal on the first batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.domain.catalog import FeatureSpec, feature_dtypes
from churn.features.family_rows import FamilyRows, take_family_rows
from churn.features.output_arrow import convert_feature_columns, same_arrays
from churn.io import frame_to_arrow

logger = logging.getLogger(__name__)


def read_feature_batches(
    families: list[FamilyRows], row_keys: np.ndarray, batch_rows: int
) -> Iterator[pa.Table]:
    """Yield the feature columns in population order, ``batch_rows`` rows at a time.

    A batch takes each family's rows of its population rows' keys from the family's file
    (:class:`churn.features.family_rows.FamilyRows`: row ``i`` of a family file is key ``i``),
    decoding only the row groups that hold them, and puts the families' columns side by side;
    without duplicates a batch's keys ascend, so every row group is decoded once. Holding
    the whole population at once would need every family's columns in memory together
    (out of memory at 200k customers under a 1 GB limit when it was one DuckDB join). Always
    yields at least one (maybe empty) table, so an empty population still writes a file with
    every column; without families a batch is a table of no columns that keeps its row count.
    """
    n_rows = len(row_keys)
    for start in range(0, max(n_rows, 1), batch_rows):
        stop = min(start + batch_rows, n_rows)
        if not families:
            yield pa.table([pa.nulls(stop - start)], names=["_rows"]).select([])
            continue
        yield take_family_rows(families, row_keys[start:stop])


def assemble_in_pandas(
    features: pa.Table,
    key_frame: pd.DataFrame,
    dtypes: Mapping[str, str],
    schema: pa.Schema | None,
) -> pa.Table:
    """Assemble an output batch through pandas: the catalog dtypes, then back to Arrow.

    Args:
        features: The batch's feature columns (:func:`read_feature_batches`).
        key_frame: Its key columns (:func:`build_key_frame`), indexed by population row.
        dtypes: The catalog dtypes (:func:`churn.domain.catalog.feature_dtypes`).
        schema: The output schema; ``None`` infers it (with pandas' metadata).
    """
    frame = features.to_pandas(split_blocks=True).astype(dtypes).set_axis(key_frame.index)
    return frame_to_arrow(pd.concat([key_frame, frame], axis=1), schema)


def assemble_in_arrow(
    features: pa.Table, key_frame: pd.DataFrame, schema: pa.Schema
) -> pa.Table | None:
    """Assemble an output batch with ``schema``'s arrays without a pandas round trip.

    The feature columns, most of the batch, are converted in Arrow
    (:func:`churn.features.output_arrow.convert_feature_columns`); the three key columns
    still go through :func:`churn.io.frame_to_arrow` as before (their dtypes are the
    population's own, and they are a small part of the work).

    Returns:
        The table :func:`assemble_in_pandas` gives with ``schema`` (its arrays, not its schema
        metadata, which the file's writer does not take), or ``None`` when a column's types
        are not converted exactly in Arrow.
    """
    names = [*key_frame.columns, *features.column_names]
    if names != schema.names:
        return None
    columns = convert_feature_columns(features, schema)
    if columns is None:
        return None
    key_schema = pa.schema([schema.field(name) for name in key_frame.columns])
    key_table = frame_to_arrow(key_frame, key_schema)
    return pa.Table.from_arrays([*key_table.columns, *columns], schema=schema)


def check_arrow_route(table: pa.Table, features: pa.Table, key_frame: pd.DataFrame) -> bool:
    """Whether :func:`assemble_in_arrow` assembles the first batch as the pandas route did.

    The conversions in Arrow mirror those of the pandas and pyarrow versions they were written
    against; should another version convert otherwise, the batches keep the pandas route and
    the file stays the same.
    """
    arrow_table = assemble_in_arrow(features, key_frame, table.schema)
    if arrow_table is None or not same_arrays(table, arrow_table):
        logger.debug("features output: batches assembled through pandas (not exact in Arrow)")
        return False
    return True


def build_key_frame(keys: pd.DataFrame, population: pd.DataFrame) -> pd.DataFrame:
    """The key columns of the output: text ids, the population's own cutoffs and labels."""
    index = keys.index
    label = (
        population["label"].set_axis(index)
        if "label" in population.columns
        else pd.Series(pd.NA, index=index, dtype="Int8")
    )
    return pd.DataFrame(
        {
            "customer_id": keys["customer_id"],
            "cutoff": population["cutoff"].set_axis(index),
            "label": label,
        }
    )


def convert_to_feature_frame(
    table: pa.Table | None, specs: list[FeatureSpec], n_rows: int
) -> pd.DataFrame:
    """Convert the Arrow result to pandas with the catalog dtypes, releasing Arrow buffers."""
    if table is None:
        return pd.DataFrame(index=pd.RangeIndex(n_rows))
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    return frame.astype(feature_dtypes(specs))
