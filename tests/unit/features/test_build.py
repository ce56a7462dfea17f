"""build_features as a whole: leakage, shard determinism, skipping, entity mode, catalog, runner."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pytest
from support.helpers import CFG, random_case
from support.synthetic import CUTOFFS, all_keys, contract_frame, make_tables, population

from churn.config import FeaturesConfig, parse_params
from churn.domain.catalog import CATALOG_COLUMNS, FeatureSpec, catalog_frame, check_catalog
from churn.domain.contract import CONTRACT
from churn.errors import ChurnError, DataContractError
from churn.features import build as build_module
from churn.features.build import EVENT_FAMILIES, build_features, order_families
from churn.features.families.usage import resolve_usage_event_types
from churn.stages.features import run_features
from churn.stages.label import run_label

FAMILIES = {"acquisition", "billing", "usage", "support", "engagement"}


def _future_times(rng: np.random.Generator, cutoff: pd.Timestamp, n: int) -> pd.Series:
    """Random instants at or after the cutoff, a third of them exactly at it."""
    offsets = pd.to_timedelta(rng.random(n) * 200 * 86400, unit="s").round("s")
    offsets = np.where(rng.random(n) < 0.33, pd.Timedelta(0), offsets)
    return pd.Series(cutoff + pd.to_timedelta(offsets)).astype("datetime64[us, UTC]")


def perturb_future(tables: dict, cutoff: pd.Timestamp, seed: int) -> dict:
    """Modify, delete and add everything that becomes known at or after ``cutoff``."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, frame in tables.items():
        spec = CONTRACT[name]
        frame = frame.copy()
        future = (frame[spec.event_time] >= cutoff).to_numpy()
        # Later facts of rows known before the cutoff: ends, responses, resolutions, CSAT.
        for column in spec.timestamp_columns:
            if column == spec.event_time:
                continue
            later = (~future & (frame[column] >= cutoff)).to_numpy()
            values = _future_times(rng, cutoff, int(later.sum()))
            values[rng.random(len(values)) < 0.3] = pd.NaT
            frame.loc[later, column] = values.to_numpy()
        if name == "support_tickets":
            unknown_csat = ~(frame["csat_received_at"] < cutoff)
            frame.loc[unknown_csat, "csat_score"] = rng.integers(1, 6, int(unknown_csat.sum()))
            unfinished = ~(frame["resolved_at"] < cutoff)
            frame.loc[unfinished, "reopened"] = ~frame.loc[unfinished, "reopened"].fillna(False)
        if name == "customers":  # keys stay unique: only change the not-yet-converted
            frame.loc[future, "segment"] = "changed"
            frame.loc[future, "converted_at"] = _future_times(
                rng, cutoff, int(future.sum())
            ).to_numpy()
            out[name] = frame
            continue
        # Scramble the future rows' other columns, move them in the future, delete some.
        rows = frame[future].copy()
        for column in rows.columns:
            if column not in ("customer_id", *spec.key):
                rows[column] = rows[column].sample(frac=1.0, random_state=seed).to_numpy()
        rows[spec.event_time] = _future_times(rng, cutoff, len(rows)).to_numpy()
        rows = rows[rng.random(len(rows)) > 0.3]
        # New future rows copied from random rows of any time.
        extra = frame.sample(n=min(len(frame), 20), replace=True, random_state=seed).copy()
        extra[spec.event_time] = _future_times(rng, cutoff, len(extra)).to_numpy()
        for key in spec.key:
            extra[key] = pd.Series([f"new-{i}" for i in range(len(extra))], dtype="str").to_numpy()
        out[name] = pd.concat([frame[~future], rows, extra], ignore_index=True)
    return out


@pytest.mark.parametrize("seed", range(10))
def test_rows_at_or_after_cutoff_do_not_change_features(seed: int) -> None:
    tables, keys, result = random_case(seed)
    cutoff = CUTOFFS[seed % len(CUTOFFS)]
    changed = build_features(perturb_future(tables, cutoff, seed), keys, CFG)
    past = (keys["cutoff"] <= cutoff).to_numpy()
    pd.testing.assert_frame_equal(result.frame[past], changed.frame[past])


def test_targeted_future_facts_do_not_leak() -> None:
    t = "2024-06-01"
    base = {
        "customers": contract_frame(
            "customers", [{"customer_id": "a", "converted_at": "2024-01-01"}]
        ),
        "subscriptions": contract_frame(
            "subscriptions",
            [
                {
                    "subscription_id": "s",
                    "customer_id": "a",
                    "plan": "pro",
                    "billing_period": "monthly",
                    "mrr": 10.0,
                    "started_at": "2024-01-01",
                    "ended_at": None,
                }
            ],
        ),
        "support_tickets": contract_frame(
            "support_tickets",
            [
                {
                    "ticket_id": "t",
                    "customer_id": "a",
                    "opened_at": "2024-05-20",
                    "priority": "low",
                    "first_response_at": "2024-05-21",
                    "resolved_at": None,
                }
            ],
        ),
    }
    keys = population([("a", t)])
    reference = build_features(base, keys, CFG).frame
    variants = {
        "ticket resolved after T with a reopen": {"resolved_at": "2024-06-03", "reopened": True},
        "CSAT arriving after T": {
            "resolved_at": "2024-05-25",
            "csat_score": 1,
            "csat_received_at": "2024-06-01",
        },
    }
    for label, change in variants.items():
        tables = dict(base)
        ticket = {
            "ticket_id": "t",
            "customer_id": "a",
            "opened_at": "2024-05-20",
            "priority": "low",
            "first_response_at": "2024-05-21",
            **change,
        }
        tables["support_tickets"] = contract_frame("support_tickets", [ticket])
        frame = build_features(tables, keys, CFG).frame
        if "CSAT" in label:
            # Resolution before T is known, so only the CSAT columns must be unchanged.
            assert np.isnan(frame["last_csat_score"].iloc[0]), label
        else:
            pd.testing.assert_frame_equal(reference, frame, obj=label)
    tables = dict(base)
    tables["subscription_changes"] = contract_frame(
        "subscription_changes",
        [
            {
                "subscription_id": "s",
                "customer_id": "a",
                "effective_at": t,
                "change_type": "upgrade",
                "mrr_before": 10.0,
                "mrr_after": 99.0,
            }
        ],
    )
    frame = build_features(tables, keys, CFG).frame
    assert frame["mrr_at_cutoff"].iloc[0] == 10.0
    assert frame["subscription_upgrades_last_7d"].iloc[0] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_customer_shards_give_the_same_features(seed: int) -> None:
    tables, keys, result = random_case(seed)
    rng = np.random.default_rng(seed)
    ids = tables["customers"]["customer_id"].to_numpy()
    shard_of = dict(zip(ids, rng.integers(0, 3, len(ids)), strict=True))
    # Event types are chosen once from all the data (the driver does it), never per shard.
    cfg = resolve_usage_event_types(CFG, tables, keys["cutoff"].min())
    assert cfg.usage_event_types != "auto"
    parts = []
    for shard in range(3):
        mine = {i for i, s in shard_of.items() if s == shard}
        shard_tables = {n: f[f["customer_id"].isin(mine)] for n, f in tables.items()}
        shard_keys = keys[keys["customer_id"].isin(mine)]
        parts.append(
            build_features(shard_tables, shard_keys, cfg).frame.set_index(shard_keys.index)
        )
    combined = pd.concat(parts).sort_index()
    pd.testing.assert_frame_equal(combined, result.frame)


def test_population_order_and_duplicates_are_kept() -> None:
    tables, keys, result = random_case(0)
    shuffled = pd.concat([keys, keys.iloc[:5]]).sample(frac=1.0, random_state=1)
    frame = build_features(tables, shuffled, CFG).frame
    assert frame["customer_id"].tolist() == shuffled["customer_id"].tolist()
    expected = result.frame.set_index(["customer_id", "cutoff"]).loc[
        list(zip(shuffled["customer_id"], shuffled["cutoff"], strict=True))
    ]
    pd.testing.assert_frame_equal(
        frame.set_index(["customer_id", "cutoff"]), expected, check_index_type=False
    )


def test_output_dtypes_follow_the_catalog() -> None:
    _, _, result = random_case(1)
    frame, catalog = result.frame, result.catalog
    assert list(frame.columns[:3]) == ["customer_id", "cutoff", "label"]
    assert frame["cutoff"].dtype == "datetime64[us, UTC]"
    kinds = dict(zip(catalog["name"], catalog["kind"], strict=True))
    for name, kind in kinds.items():
        assert str(frame[name].dtype) == ("float64" if kind == "numeric" else "str"), name
    assert result.skipped == {}
    assert set(catalog["family"]) == FAMILIES


def test_catalog_is_complete_and_readable() -> None:
    _, _, result = random_case(2)
    catalog = result.catalog
    assert list(catalog.columns) == list(CATALOG_COLUMNS)
    assert catalog["name"].is_unique
    check_catalog([FeatureSpec(**r) for r in catalog.to_dict("records")], result.frame.columns)
    assert (catalog.loc[catalog["family"] == "acquisition", "phase"] == "pre_sale").all()
    assert (catalog.loc[catalog["family"] != "acquisition", "phase"] == "post_sale").all()
    assert not catalog["name"].str.fullmatch(r"f\d+").any()
    assert catalog["description"].str.match(r"^[a-z0-9]").all()
    with pytest.raises(ValueError, match="without a catalog entry"):
        check_catalog([], ["x"])
    spec = FeatureSpec("x", "usage", "post_sale", "numeric", "", "things")
    with pytest.raises(ValueError, match="duplicated"):
        check_catalog([spec, spec], ["x"])
    assert catalog_frame([spec]).iloc[0]["description"] == "things"


def test_absent_tables_skip_families_and_say_so(caplog) -> None:
    full = make_tables(3)
    tables = {n: full[n] for n in ("customers", "subscriptions")}
    keys = all_keys(tables)
    with caplog.at_level(logging.INFO):
        result = build_features(tables, keys, CFG)
    assert set(result.skipped) == {
        "usage",
        "support",
        "engagement",
        "acquisition.presale_touchpoints",
        "acquisition.trial_usage",
        "billing.subscription_changes",
    }
    assert "usage_events" in result.skipped["usage"]
    assert "feature family support skipped" in caplog.text
    assert set(result.catalog["family"]) == {"acquisition", "billing"}
    only_nps = {**tables, "nps_responses": full["nps_responses"]}
    result = build_features(only_nps, keys, CFG)
    assert "engagement.postsale_touchpoints" in result.skipped
    assert "last_nps_score" in result.frame.columns


def test_usage_runs_before_acquisition_yet_columns_keep_the_journey_order() -> None:
    families = order_families(EVENT_FAMILIES)
    names = [module.FAMILY for module in families]
    assert names.index("usage") < names.index("acquisition")  # acquisition reads its table
    assert sorted(names) == sorted(module.FAMILY for module in EVENT_FAMILIES)
    tables = make_tables(4)
    result = build_features(tables, all_keys(tables), CFG)
    order = list(dict.fromkeys(result.catalog["family"]))
    assert order == [module.FAMILY for module in EVENT_FAMILIES]
    assert list(result.frame.columns[3:]) == result.catalog["name"].tolist()


def test_a_family_reading_a_table_no_earlier_family_kept_is_an_error(monkeypatch) -> None:
    # Acquisition's trial use reads the usage family's first events: run first, it must fail
    # with a message naming both, not with DuckDB's missing-table error halfway through.
    monkeypatch.setattr(build_module, "order_families", lambda families: list(families))
    tables = make_tables(4)
    with pytest.raises(ValueError, match=r"acquisition reads .*_first_usage"):
        build_features(tables, all_keys(tables), CFG)


def test_cutoffs_must_be_midnight() -> None:
    tables = make_tables(0)
    keys = population([("c000", "2024-06-01T10:00")])
    with pytest.raises(ValueError, match="midnight"):
        build_features(tables, keys, CFG)


def test_entity_mode_profile_features() -> None:
    customers = pd.DataFrame(
        {
            "customer_id": pd.Series(["a", "b"], dtype="str"),
            "Monthly Fee": [10.0, None],
            "seats": pd.array([3, None], dtype="Int64"),
            "has_contract": pd.array([True, False], dtype="boolean"),
            "region": pd.Series(["north", None], dtype="str"),
            "signed_up": pd.Series(pd.to_datetime(["2024-01-01", "2024-12-01"], utc=True)),
        }
    )
    keys = population([("b", "2025-01-01"), ("a", "2025-01-01")])
    result = build_features({"customers": customers}, keys, CFG, mode="entity")
    frame = result.frame
    assert frame["customer_id"].tolist() == ["b", "a"]
    assert frame["monthly_fee"].tolist()[1] == 10.0 and np.isnan(frame["monthly_fee"].iloc[0])
    assert frame["seats"].dtype == "float64" and frame["has_contract"].tolist() == [0.0, 1.0]
    assert frame["region"].dtype == "str" and pd.isna(frame["region"].iloc[0])
    assert frame["days_since_signed_up"].tolist() == [31.0, 366.0]
    catalog = result.catalog.set_index("name")
    assert set(catalog["family"]) == {"profile"}
    assert catalog.loc["monthly_fee", "description"] == "monthly fee"
    assert catalog.loc["region", "kind"] == "categorical"


def test_entity_mode_declared_age_is_whole_years_never_the_date() -> None:
    customers = pd.DataFrame(
        {
            "customer_id": pd.Series([1, 2], dtype="int64").astype("str"),
            "BirthDate": pd.Series(pd.to_datetime(["1990-01-01", "1990-01-02"], utc=True)),
        }
    )
    keys = population([("1", "2025-01-01"), ("2", "2025-01-01")])
    cfg = FeaturesConfig(customer_attributes={"BirthDate": "age"})
    result = build_features({"customers": customers}, keys, cfg, mode="entity")
    assert list(result.catalog["name"]) == ["birthdate_age_years"]
    assert result.frame["birthdate_age_years"].tolist() == [35.0, 34.0]
    with pytest.raises(DataContractError, match="BirthDate"):  # undeclared: personal data
        build_features({"customers": customers}, keys, CFG, mode="entity")


def _write_validated(tmp_path, tables: dict) -> object:
    validated = tmp_path / "validated"
    validated.mkdir()
    for name, frame in tables.items():
        frame.to_parquet(validated / f"{name}.parquet", index=False)
    return validated


def test_runner_events_mode(tmp_path, caplog) -> None:
    validated = _write_validated(tmp_path, make_tables(4, n_customers=40))
    params = parse_params(
        {
            "label": {"min_history_days": 90, "min_tenure_days": 0},
            "features": {"windows_days": [30, 90]},
        }
    )
    labels = tmp_path / "labels.parquet"
    run_label(params=params, validated_dir=validated, out_path=labels)
    out, catalog = tmp_path / "features" / "features.parquet", tmp_path / "catalog.csv"
    with caplog.at_level(logging.INFO):
        run_features(
            params=params,
            validated_dir=validated,
            labels_path=labels,
            out_path=out,
            catalog_path=catalog,
        )
    frame, label_frame = pd.read_parquet(out), pd.read_parquet(labels)
    assert frame[["customer_id", "cutoff", "label"]].equals(
        label_frame[["customer_id", "cutoff", "label"]]
    )
    written = pd.read_csv(catalog)
    assert list(written.columns) == list(CATALOG_COLUMNS)
    assert set(written["name"]) == set(frame.columns) - {"customer_id", "cutoff", "label"}
    assert "features:" in caplog.text


def test_runner_entity_mode_drops_the_label(tmp_path) -> None:
    customers = pd.DataFrame(
        {
            "customer_id": pd.Series(["a", "b", "c"], dtype="str"),
            "churned": [1, 0, 0],
            "age": [1.0, 2.0, 3.0],
        }
    )
    validated = _write_validated(tmp_path, {"customers": customers})
    params = parse_params({"ingest": {"mode": "entity", "as_of": "2025-01-01"}})
    labels, out, catalog = tmp_path / "l.parquet", tmp_path / "f.parquet", tmp_path / "c.csv"
    run_label(params=params, validated_dir=validated, out_path=labels)
    run_features(
        params=params,
        validated_dir=validated,
        labels_path=labels,
        out_path=out,
        catalog_path=catalog,
    )
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["customer_id", "cutoff", "label", "age"]
    assert frame["label"].tolist() == [1, 0, 0]


def test_spark_engine_missing_is_a_clear_error(tmp_path, monkeypatch) -> None:
    # None in sys.modules makes the import fail as if churn.spark.features were not installed.
    monkeypatch.setitem(sys.modules, "churn.spark.features", None)
    validated = _write_validated(tmp_path, make_tables(5))
    keys = all_keys(make_tables(5))
    keys.to_parquet(tmp_path / "labels.parquet")
    params = parse_params({"features": {"engine": "spark"}})
    with pytest.raises(ChurnError, match=r"churn\.spark"):
        run_features(
            params=params,
            validated_dir=validated,
            labels_path=tmp_path / "labels.parquet",
            out_path=tmp_path / "f.parquet",
            catalog_path=tmp_path / "c.csv",
        )


def test_features_config_windows_are_respected() -> None:
    tables, keys, _ = random_case(0)
    result = build_features(tables, keys, FeaturesConfig(windows_days=(14,), ticket_categories=()))
    names = set(result.catalog["name"])
    assert "support_tickets_last_14d" in names and "usage_events_last_14d" in names
    assert not any(n.startswith("usage_trend") for n in names)  # needs two windows
    assert "support_billing_tickets_last_14d" not in names


def test_events_mode_refuses_an_email_column_mapped_onto_a_contract_column() -> None:
    tables = make_tables(1)
    customers = tables["customers"].copy()
    customers["campaign"] = [f"user{i}@example.com" for i in range(len(customers))]
    tables["customers"] = customers

    with pytest.raises(ChurnError, match=r"customers\.campaign: 100% of its values are e-mail"):
        build_features(tables, all_keys(tables), CFG)


def test_single_email_in_a_category_is_pseudonymised_in_events_mode() -> None:
    tables = make_tables(1)
    customers = tables["customers"].copy()
    customers.loc[customers.index[0], "segment"] = "ceo@example.com"
    tables["customers"] = customers
    keys = all_keys(tables)

    frame = build_features(tables, keys, CFG).frame

    segments = frame["segment"].dropna()
    assert "ceo@example.com" not in set(segments)
    assert segments.str.startswith("pii_").any()
    others = set(customers["segment"].dropna()) - {"ceo@example.com"}
    assert set(segments[~segments.str.startswith("pii_")]) <= others
