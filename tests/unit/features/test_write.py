"""The rewritten core: parity with the frozen old one, Parquet inputs, streamed output."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import features_v1, reference
from support.helpers import CFG
from support.synthetic import CUTOFFS, all_keys, make_tables, population

from churn.config import FeaturesConfig
from churn.errors import DataContractError
from churn.features import output_batches
from churn.features.build import build_features, write_features
from churn.features.families.usage import choose_usage_event_types
from churn.io import frame_to_arrow, write_parquet


def _as_parquet(tables: dict[str, pd.DataFrame], directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in tables.items():
        paths[name] = directory / f"{name}.parquet"
        write_parquet(frame, paths[name])
    return paths


def _integer_ids(
    tables: dict[str, pd.DataFrame], keys: pd.DataFrame
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The same data as a third-party export would give it: integer customer ids."""
    ids = {cid: 1000 + i for i, cid in enumerate(sorted(tables["customers"]["customer_id"]))}
    out = {
        name: frame.assign(customer_id=frame["customer_id"].map(ids).astype("int64"))
        for name, frame in tables.items()
    }
    return out, keys.assign(customer_id=keys["customer_id"].map(ids).astype("int64"))


def _sample_population(tables: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    """Part of the customers (the others' rows must not matter), shuffled, with a duplicate."""
    keys = all_keys(tables)
    keys = keys.sample(frac=0.6, random_state=seed)
    return pd.concat([keys, keys.iloc[:3]], ignore_index=True)


@pytest.mark.parametrize("seed", range(4))
def test_new_core_equals_the_frozen_old_one_bit_for_bit(seed: int) -> None:
    tables = make_tables(seed)
    keys = _sample_population(tables, seed)
    old = features_v1.build_features(tables, keys, CFG)
    new = build_features(tables, keys, CFG)
    pd.testing.assert_frame_equal(new.frame, old.frame, check_exact=True)
    pd.testing.assert_frame_equal(new.catalog, old.catalog)
    assert new.skipped == old.skipped


def test_integer_customer_ids_give_the_same_features_as_text_ids() -> None:
    tables = make_tables(5)
    keys = _sample_population(tables, 5)
    int_tables, int_keys = _integer_ids(tables, keys)
    text_ids = build_features(tables, keys, CFG).frame
    int_ids = build_features(int_tables, int_keys, CFG).frame
    assert int_ids["customer_id"].tolist() == int_keys["customer_id"].astype(str).tolist()
    features = text_ids.columns[3:]
    assert len(features) > 50
    pd.testing.assert_frame_equal(int_ids[features], text_ids[features], check_exact=True)


@pytest.mark.parametrize("integer_ids", [False, True])
def test_parquet_inputs_and_streamed_output_equal_the_frame(tmp_path, integer_ids: bool) -> None:
    tables = make_tables(6)
    keys = _sample_population(tables, 6)
    if integer_ids:
        tables, keys = _integer_ids(tables, keys)
    expected = build_features(tables, keys, CFG)
    write_parquet(expected.frame, tmp_path / "expected.parquet")
    out = tmp_path / "out" / "features.parquet"
    # A small batch size: many batches, the last one partial.
    summary = write_features(_as_parquet(tables, tmp_path / "in"), keys, CFG, out, batch_rows=17)
    assert len(keys) % 17 != 0 and len(keys) > 3 * 17
    assert summary.rows == len(keys)
    pd.testing.assert_frame_equal(summary.catalog, expected.catalog)
    assert summary.skipped == expected.skipped
    pd.testing.assert_frame_equal(
        pd.read_parquet(out), pd.read_parquet(tmp_path / "expected.parquet"), check_exact=True
    )
    # The staging folder and DuckDB's scratch files beside the output are gone.
    assert [p.name for p in out.parent.iterdir()] == ["features.parquet"]


def test_parquet_table_without_an_optional_column_gets_typed_nulls(tmp_path) -> None:
    tables = make_tables(7)
    keys = all_keys(tables)
    tables["usage_events"] = tables["usage_events"].drop(columns=["quantity"])
    paths = _as_parquet(tables, tmp_path)
    from_frames = build_features(tables, keys, CFG).frame
    from_files = build_features(paths, keys, CFG).frame
    pd.testing.assert_frame_equal(from_files, from_frames, check_exact=True)
    # Missing quantity counts 1 per event: the counts are not all zero.
    assert from_files["usage_events_last_90d"].sum() > 0


def test_parquet_table_without_customer_id_is_refused(tmp_path) -> None:
    tables = make_tables(8)
    paths = _as_parquet(tables, tmp_path)
    write_parquet(tables["nps_responses"].drop(columns=["customer_id"]), paths["nps_responses"])
    with pytest.raises(DataContractError, match=r"nps_responses.*customer_id"):
        build_features(paths, all_keys(tables), CFG)


def test_empty_population_writes_every_column(tmp_path) -> None:
    tables = make_tables(9)
    keys = all_keys(tables).iloc[:0]
    expected = build_features(tables, keys, CFG).frame
    out = tmp_path / "features.parquet"
    summary = write_features(tables, keys, CFG, out)
    written = pd.read_parquet(out)
    assert summary.rows == 0
    assert list(written.columns) == list(expected.columns)
    assert len(expected.columns) > 50
    assert written.dtypes.to_dict() == expected.dtypes.to_dict()


def test_tight_memory_limit_and_scratch_folder_give_the_same_features(tmp_path) -> None:
    # Tiny data does not reach the limit: this checks the settings, the benchmark the spilling.
    tables = make_tables(10, n_customers=60)
    keys = all_keys(tables)
    expected = build_features(tables, keys, CFG).frame
    tight = FeaturesConfig(duckdb_memory_limit="64MB", duckdb_threads=1)
    scratch = tmp_path / "scratch"
    got = build_features(tables, keys, tight, scratch_dir=scratch).frame
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


@pytest.mark.parametrize("seed", range(3))
def test_usage_event_types_from_a_file_equal_those_from_the_frame(tmp_path, seed: int) -> None:
    events = make_tables(seed)["usage_events"]
    # Uneven counts so that the ranking is not decided by names alone.
    rng = np.random.default_rng(seed)
    events = pd.concat(
        [events, events.sample(n=40, random_state=seed, replace=True)], ignore_index=True
    )
    events.loc[rng.random(len(events)) < 0.05, "event_type"] = None
    path = tmp_path / "usage_events.parquet"
    write_parquet(events, path)
    before = CUTOFFS[1]
    expected = tuple(reference.usage_event_types(events, before, 4))
    assert choose_usage_event_types(events, before, 4) == expected
    assert choose_usage_event_types(path, before, 4) == expected
    # A naive cutoff is UTC, as in pandas.
    assert choose_usage_event_types(path, before.tz_localize(None), 4) == expected


def test_each_family_step_is_a_statement_of_its_own() -> None:
    """DuckDB spills one statement's state past its memory limit, but several common table
    expressions of one statement held theirs at once: at 1M customers the usage family ran out
    of memory under the default 4 GB (300k under 1.2 GB; usage, engagement and support). So a
    family's intermediate results are temporary tables, one statement each, and its final
    SELECT only joins them onto the keys."""
    from churn.features.build import EVENT_FAMILIES
    from churn.features.time_chunks import ChunkedBuckets
    from churn.features.windows import WindowedSums

    tables = make_tables(11)
    cfg = CFG.model_copy(update={"usage_event_types": ("login", "export")})
    stepped = []
    for module in EVENT_FAMILIES:
        query = module.family_query(cfg, tables)
        assert "WITH " not in query.sql.upper() and "MATERIALIZED" not in query.sql.upper()
        for name, sql in query.steps:
            if isinstance(sql, WindowedSums | ChunkedBuckets):  # statements of their own
                continue
            assert sql.lstrip().upper().startswith("SELECT"), (module.FAMILY, name)
            assert "MATERIALIZED" not in sql.upper()
        if query.steps:
            stepped.append(module.FAMILY)
    assert stepped == [module.FAMILY for module in EVENT_FAMILIES]


def test_family_tables_are_stored_in_key_order_even_after_unordered_steps(tmp_path) -> None:
    """The output batches skip row groups by key range, which needs the family table stored in
    key order: DuckDB's CREATE ... ORDER BY stores sorted runs side by side when the session
    does not preserve insertion order (the setting the steps run with). Without the setting
    in ``_create_family_table`` this fails (checked 2026-12-03, DuckDB 2.0, for the temporary
    table the families were then; a family is now a Parquet file read through a view)."""
    from churn.features.build import _create_family_table
    from churn.features.tables import KEY_INDEX
    from churn.sql import connect

    con = connect(threads=2, memory_limit="1GB")
    con.execute("SET preserve_insertion_order = false")
    rows = 1_000_000
    con.execute(
        f"CREATE TEMP TABLE {KEY_INDEX} AS SELECT 'c' || (i % 1000)::VARCHAR AS customer_id, "
        f"(i // 1000)::BIGINT AS cutoff, (hash(i) % 100000000)::BIGINT AS _key "
        f"FROM range({rows}) t(i)"
    )
    shuffled = f"SELECT _key, customer_id, cutoff, _key * 2.0 AS value FROM {KEY_INDEX}"
    _create_family_table(con, "_family_test", shuffled, tmp_path)
    stored = con.execute("SELECT _key FROM _family_test").fetchnumpy()["_key"]
    assert len(stored) == rows
    assert bool(np.all(np.diff(stored) >= 0))
    files = list(tmp_path.glob("*.parquet"))
    assert len(files) == 1
    written = pq.read_table(files[0], columns=["_key"]).column("_key").to_numpy()
    assert bool(np.all(np.diff(written) >= 0))
    # Range filters skip row groups: they are many, each holding a key range of its own.
    metadata = pq.ParquetFile(files[0]).metadata
    assert metadata.num_row_groups > 1
    groups = range(metadata.num_row_groups)
    ranges = [metadata.row_group(i).column(0).statistics for i in groups]
    assert all(a.max <= b.min for a, b in itertools.pairwise(ranges))


def test_finished_families_are_files_that_go_with_the_session(tmp_path) -> None:
    """Each family is a view over a Parquet file in the scratch folder, not a DuckDB table (no
    DuckDB memory held while the next family runs), and the files are removed afterwards."""
    from churn.features import build

    tables = make_tables(4, n_customers=40)
    scratch = tmp_path / "scratch"
    with build._feature_session(tables, all_keys(tables), CFG, None, scratch) as session:
        family_tables = [family.path.stem for family in session.family_rows]
        assert family_tables
        views = {
            name
            for (name,) in session.con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
        assert set(family_tables) <= views
        tables_held = session.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '_family_%'"
        ).fetchall()
        assert tables_held == []
        files = sorted(p.name for p in scratch.rglob("*.parquet"))
        assert files == sorted(f"{name}.parquet" for name in family_tables)
    assert list(scratch.rglob("*.parquet")) == []


def test_parquet_inputs_are_scanned_in_place_and_frames_copied_once(tmp_path) -> None:
    """A Parquet input is a view over its file (copied, 1M customers' usage events passed the
    memory limit and went through the spill folder); a frame is copied into DuckDB once."""
    from churn.features import build

    tables = make_tables(4, n_customers=40)
    paths = _as_parquet({k: v for k, v in tables.items() if k != "customers"}, tmp_path / "in")
    inputs = {"customers": tables["customers"], **paths}
    with build._feature_session(inputs, all_keys(tables), CFG, None, tmp_path / "s") as session:
        views = {
            name
            for (name,) in session.con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
        copied = {
            name
            for (name,) in session.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
    assert set(paths) <= views
    assert not set(paths) & copied
    assert "customers" in copied and "customers" not in views


def test_sorted_population_streamed_equals_the_frozen_old_core(tmp_path) -> None:
    """A population without duplicates in key order: each batch is a slice of every family
    file, across several row groups when the batches are small."""
    tables = make_tables(7)
    keys = all_keys(tables)
    out = tmp_path / "features.parquet"
    write_features(_as_parquet(tables, tmp_path / "in"), keys, CFG, out, batch_rows=13)
    expected = features_v1.build_features(tables, keys, CFG).frame
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected, check_exact=True)


def test_running_out_of_duckdb_memory_names_the_work_and_the_knobs(tmp_path) -> None:
    from churn.errors import ResourceLimitError

    tables = make_tables(12, n_customers=300)
    tight = FeaturesConfig(duckdb_memory_limit="16MB", duckdb_threads=1)
    with pytest.raises(ResourceLimitError) as caught:
        write_features(tables, all_keys(tables), tight, tmp_path / "features.parquet")
    message = str(caught.value)
    assert "features.duckdb_memory_limit = 16MB" in message
    assert "features.duckdb_threads = 1" in message
    assert "(customer, cutoff) rows" in message and "Out of Memory" in message
    assert not (tmp_path / "features.parquet").exists()  # nothing half-written


def _naive_output(
    frame: pd.DataFrame,
    path: Path,
    batch_rows: int,
    split_at: int | None = None,
    split_path: Path | None = None,
    split_metadata: dict[str, str] | None = None,
) -> None:
    """The reference for write_features' files: ``build_features``' frame cut into its row groups.

    Each row group is converted from the frame by pandas on its own, with the schema of the
    first batch (pandas' metadata included), as the output once was assembled batch by batch.
    """
    n_rows = len(frame)
    split = n_rows if split_path is None or split_at is None else split_at
    schema = frame_to_arrow(frame.iloc[:batch_rows]).schema
    cuts = sorted({*range(0, n_rows, batch_rows), split, n_rows})
    groups = [(a, b) for a, b in itertools.pairwise(cuts) if a < b]
    files = [(path, schema, [(a, b) for a, b in groups if b <= split])]
    if split_path is not None:
        split_schema = schema.with_metadata({**schema.metadata, **(split_metadata or {})})
        files.append((split_path, split_schema, [(a, b) for a, b in groups if a >= split]))
    for file, file_schema, file_groups in files:
        with pq.ParquetWriter(file, file_schema) as writer:
            for a, b in file_groups:
                writer.write_table(frame_to_arrow(frame.iloc[a:b], schema))
            if not file_groups:  # as write_features: one empty row group
                writer.write_table(schema.empty_table())


def _third_party_inputs(seed: int, directory: Path) -> tuple[dict[str, Path], pd.DataFrame]:
    """Parquet inputs as an export gives them: integer ids, a category level only the last row's
    customer has, missing categories, NaN (not null) monthly fees, and a shuffled population
    with duplicates and 0/1/missing labels."""
    tables = make_tables(seed)
    keys = _sample_population(tables, seed)
    last = keys["customer_id"].iloc[-1]
    customers = tables["customers"]
    customers.loc[customers["customer_id"] == last, "segment"] = "public_sector"
    customers.loc[customers.index[::4], "country"] = None
    tables, keys = _integer_ids(tables, keys)
    labels = np.random.default_rng(seed).choice([0, 1, -1], len(keys))
    keys["label"] = pd.array(np.where(labels < 0, None, labels), dtype="Int8")
    paths = _as_parquet(tables, directory)
    # pandas writes NaN as null: pyarrow keeps it NaN, which DuckDB carries into the families.
    subscriptions = pq.read_table(paths["subscriptions"])
    mrr = tables["subscriptions"]["mrr"].to_numpy().copy()
    mrr[::3] = np.nan
    column = subscriptions.schema.get_field_index("mrr")
    subscriptions = subscriptions.set_column(column, "mrr", pa.array(mrr, from_pandas=False))
    pq.write_table(subscriptions, paths["subscriptions"])
    return paths, keys


def _count_arrow_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the rows of every batch write_features assembles in Arrow (the first one's check
    included)."""
    assembled: list[int] = []
    assemble_in_arrow = output_batches.assemble_in_arrow

    def counting(*args: object, **kwargs: object) -> pa.Table | None:
        table = assemble_in_arrow(*args, **kwargs)
        if table is not None:
            assembled.append(table.num_rows)
        return table

    monkeypatch.setattr(output_batches, "assemble_in_arrow", counting)
    return assembled


@pytest.mark.parametrize("batch_rows", [3, 7])
def test_batches_assembled_in_arrow_write_the_bytes_of_the_pandas_route(
    tmp_path, monkeypatch, batch_rows: int
) -> None:
    paths, keys = _third_party_inputs(13, tmp_path / "in")
    expected = build_features(paths, keys, CFG)
    assert expected.frame["mrr_at_cutoff"].isna().any() and keys["label"].isna().any()
    assert (expected.frame["segment"] == "public_sector").tolist()[-1:] == [True]
    reference = tmp_path / "reference.parquet"
    _naive_output(expected.frame, reference, batch_rows)
    assembled = _count_arrow_batches(monkeypatch)
    out = tmp_path / "out" / "features.parquet"
    write_features(paths, keys, CFG, out, batch_rows=batch_rows)
    n_batches = -(-len(keys) // batch_rows)
    # The first batch in Arrow too (to check the route against pandas'), then every other.
    assert len(assembled) == n_batches and sum(assembled) == len(keys)
    assert out.read_bytes() == reference.read_bytes()
    metadata = pq.ParquetFile(out).metadata
    assert metadata.num_row_groups == n_batches
    assert b"pandas" in metadata.metadata


def test_entity_mode_nullable_columns_write_the_bytes_of_the_pandas_route(tmp_path) -> None:
    customers = pd.DataFrame(
        {
            "customer_id": pd.Series([f"{i}" for i in range(11)], dtype="str"),
            "fee": [10.0, np.nan, 3.5, np.inf, -0.0, 1e300, np.nan, 2.0, 7.0, np.nan, 0.1],
            "seats": pd.array([3, None, 2**60, 0, -1, None, 5, 6, 7, 8, None], dtype="Int64"),
            "has_contract": pd.array([True, None, False] * 3 + [None, True], dtype="boolean"),
            "region": pd.Series(["north", None, ""] + ["south"] * 7 + ["east"], dtype="str"),
        }
    )
    keys = population([(f"{i}", "2025-01-01") for i in (3, 1, 4, 1, 5, 9, 2, 6, 10, 0)])
    expected = build_features({"customers": customers}, keys, CFG, mode="entity").frame
    reference = tmp_path / "reference.parquet"
    _naive_output(expected, reference, 4)
    out = tmp_path / "features.parquet"
    write_features({"customers": customers}, keys, CFG, out, mode="entity", batch_rows=4)
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("split_at", [0, 5, 14, 10_000])
def test_split_files_assembled_in_arrow_are_the_bytes_of_the_pandas_route(
    tmp_path, split_at: int
) -> None:
    paths, keys = _third_party_inputs(14, tmp_path / "in")
    split_at = min(split_at, len(keys))
    expected = build_features(paths, keys, CFG).frame
    metadata = {"scoring_cutoff": "2024-10-01"}
    reference = tmp_path / "reference.parquet"
    reference_split = tmp_path / "reference_split.parquet"
    _naive_output(expected, reference, 6, split_at, reference_split, metadata)
    out, split_path = tmp_path / "out" / "features.parquet", tmp_path / "out" / "scoring.parquet"
    write_features(
        paths,
        keys,
        CFG,
        out,
        batch_rows=6,
        split_at=split_at,
        split_path=split_path,
        split_metadata=metadata,
    )
    assert out.read_bytes() == reference.read_bytes()
    assert split_path.read_bytes() == reference_split.read_bytes()


@pytest.mark.parametrize("with_split", [False, True])
def test_empty_population_file_is_the_bytes_of_the_pandas_route(tmp_path, with_split) -> None:
    paths, keys = _third_party_inputs(15, tmp_path / "in")
    keys = keys.iloc[:0]
    expected = build_features(paths, keys, CFG).frame
    split = tmp_path / "out" / "scoring.parquet" if with_split else None
    reference_split = tmp_path / "reference_split.parquet" if with_split else None
    _naive_output(expected, tmp_path / "reference.parquet", 5, 0, reference_split)
    out = tmp_path / "out" / "features.parquet"
    write_features(paths, keys, CFG, out, batch_rows=5, split_at=0, split_path=split)
    assert out.read_bytes() == (tmp_path / "reference.parquet").read_bytes()
    if split is not None and reference_split is not None:
        assert split.read_bytes() == reference_split.read_bytes()


@pytest.mark.parametrize("refusal", ["types", "first_batch"])
def test_batches_take_the_pandas_route_when_arrow_is_not_exact(
    tmp_path, monkeypatch, refusal: str
) -> None:
    """A column type the Arrow conversion does not handle, or a first batch whose two
    assemblies differ, sends every batch through pandas: the file is the same."""
    paths, keys = _third_party_inputs(16, tmp_path / "in")
    reference = tmp_path / "reference.parquet"
    write_features(paths, keys, CFG, reference, batch_rows=5)
    if refusal == "types":
        monkeypatch.setattr(output_batches, "convert_feature_columns", lambda *_: None)
    else:
        monkeypatch.setattr(output_batches, "same_arrays", lambda *_: False)
    assembled = _count_arrow_batches(monkeypatch)
    out = tmp_path / "features.parquet"
    write_features(paths, keys, CFG, out, batch_rows=5)
    assert assembled == ([] if refusal == "types" else [5])
    assert out.read_bytes() == reference.read_bytes()
