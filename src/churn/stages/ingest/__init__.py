"""``churn ingest``: validate raw tables against the data contract and quarantine bad rows.

The pure core :func:`validate_tables` takes the raw frames as read (user column names, text or
typed values) and returns, per table, the valid rows in contract dtypes, the quarantined rows as
read with every rule they broke, and a JSON-ready report. Problems with a whole table (a
required table or column missing, too many bad rows) raise
:class:`~churn.errors.DataContractError` instead: no partial output is better than a model
silently trained on a fraction of the data.

Row rules, as they appear in ``_failed_rules`` (``"column:rule; column:rule"``):

* ``<col>:not_a_number``, ``<col>:not_an_integer``, ``<col>:not_a_timestamp``,
  ``<col>:not_a_bool``: the value does not convert to the column's type.
* ``<col>:missing``: no value in a non-nullable column.
* ``<col>:not_in_vocabulary``: a value outside a closed vocabulary.
* ``<col>:out_of_range[min,max]``: a number outside its bounds (``inf`` for no bound).
* ``duplicate_row``: identical to an earlier row in every column that is kept (the first
  copy stays valid).
* ``<key>:duplicate_key``: rows that share a unique key but differ; all of them are
  quarantined, as there is no telling which one is right.
* ``<later>:before_<earlier>``: a timestamp before the one it must follow.
* ``<col>:future_dated``: a timestamp after the end of the ``as_of`` day (UTC). A
  subscription's ``ended_at`` is exempt: a paid-through end date after ``as_of`` is data.
* ``<event_time>:out_of_range[after_data_end]``: a row stamped after its table's data end,
  ``ingest.data_end`` or the end of the table's data density (a stray row months after the
  rest; see :mod:`churn.domain.data_end`).
* ``<col>:too_large[abs>L]``: a number larger in magnitude than ``ingest.max_abs_value``
  (finite but absurd; it would overflow the features to ``inf``).
* ``customer_id:unknown_customer``, ``subscription_id:unknown_subscription``: a reference to
  a customer or subscription that is not among the *valid* rows of its table.
* ``<label>:label_invalid`` (entity mode): a missing label or one that is not 0/1.
* ``<attribute>:not_a_number`` (entity mode): a value that does not parse in an attribute
  column inferred as numeric (at least 99% of its non-blank values parse; see
  :func:`~churn.validation.coerce.coerce_attribute`). The report's ``attribute_columns`` says
  per column the inferred type and the unparsable rows.

Value mappings (``ingest.tables.<t>.values``) compare codes, not Python types (``{1: monthly}``
matches 1, "1" and "1.0"); ``billing_period`` month counts 1/3/6/12 need no mapping. A
``not_in_vocabulary`` rule in the report carries a ``detail``: the most frequent source values
that missed, with their types, and the mapping's keys with theirs.

Whole-table rules: a required table with 0 rows is an error saying so (not thousands of
orphaned child rows); an optional table with 0 rows counts as absent (its feature family is
skipped, and the report says why), because "no rows" and "no table" must not give different
features. A table file named in ``ingest.tables.<t>.file`` must resolve inside the raw folder
unless ``ingest.allow_outside_raw`` is true.

The runner :func:`run_ingest` reads the raw directory, calls the core, and writes the outputs
only once everything has validated.

Large tables: in events mode a table file with more rows than ``ingest.batch_rows`` is
validated and written in batches, with the outputs of validating it whole; the rules that need
the whole table are kept exact from a first pass (:mod:`~churn.stages.ingest.batches`). Entity
mode reads its one table whole (attribute types are inferred from all values). The largest
batched table that no other table references (with at least ``ingest.worker_min_rows`` rows)
is validated in a worker process while this one validates the others (``ingest.workers``;
:mod:`~churn.stages.ingest.workers`); the outputs are the same.

Modules: :mod:`~churn.stages.ingest.tables` (which tables, required tables and columns),
:mod:`~churn.stages.ingest.rows` (one table: conversion, row rules, quarantine),
:mod:`~churn.stages.ingest.batches` (one large table in batches),
:mod:`~churn.stages.ingest.core` (:func:`validate_tables`),
:mod:`~churn.stages.ingest.files` (reading and writing the table files),
:mod:`~churn.stages.ingest.workers` (a table in a worker process) and
:mod:`~churn.stages.ingest.runner` (the stage's I/O). Rules are evaluated column-wise over
whole tables (or batches) and only failing rows are rendered as text, so validation costs about
one scan of the data (about three for a batched table, whose one-row rules are evaluated
twice).
"""

from churn.stages.ingest.core import validate_tables
from churn.stages.ingest.rows import OUT_OF_RANGE_AFTER_DATA_END, SCHEDULED_END_COLUMNS
from churn.stages.ingest.runner import (
    choose_raw_dir,
    log_data_ends,
    print_summary,
    read_raw_tables,
    run_ingest,
)
from churn.stages.ingest.tables import (
    FAILED_RULES,
    ROW_NUMBER,
    UNKNOWN_CUSTOMER,
    UNKNOWN_SUBSCRIPTION,
    IngestResult,
    table_specs,
)

__all__ = [
    "FAILED_RULES",
    "OUT_OF_RANGE_AFTER_DATA_END",
    "ROW_NUMBER",
    "SCHEDULED_END_COLUMNS",
    "UNKNOWN_CUSTOMER",
    "UNKNOWN_SUBSCRIPTION",
    "IngestResult",
    "choose_raw_dir",
    "log_data_ends",
    "print_summary",
    "read_raw_tables",
    "run_ingest",
    "table_specs",
    "validate_tables",
]
