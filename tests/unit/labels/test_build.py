"""Labels: hand-made timelines for the churn definition, cutoffs, population and runner."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from support.label_tables import label_tables, subscription_row
from support.synthetic import contract_frame

from churn.config import LabelConfig, parse_params
from churn.errors import DataContractError, EmptyPopulationError
from churn.labels.build import (
    LABEL_COLUMNS,
    active_population,
    build_labels,
    count_labels,
    count_labels_at,
    label_counts_agree,
)
from churn.labels.plausibility import describe_cutoff_counts, describe_cutoffs, summarize_labels
from churn.labels.schedule import build_cutoffs, data_end
from churn.stages.label import run_label

T = pd.Timestamp("2024-06-01", tz="UTC")
# Data runs to 2025-01-01, so cutoffs up to 2024-10-01 have a fully observed 60 + 14 days.
CFG = LabelConfig(
    first_cutoff=dt.date(2024, 6, 1),
    last_cutoff=dt.date(2024, 6, 1),
    horizon_days=60,
    grace_days=14,
)


def _label(subs: list[dict], cfg: LabelConfig = CFG, customer: str = "a") -> object:
    labels = build_labels(label_tables(subs), cfg)
    row = labels[(labels["customer_id"] == customer) & (labels["cutoff"] == T)]
    assert len(row) == 1
    return row["label"].iloc[0]


def test_monthly_cancellation_inside_horizon_is_churn() -> None:
    assert _label([subscription_row("a1", "a", "2023-03-01", "2024-07-10")]) == 1


def test_end_after_horizon_is_not_churn() -> None:
    assert _label([subscription_row("a1", "a", "2023-03-01", "2024-08-15")]) == 0


def test_renewal_inside_grace_period_is_not_churn() -> None:
    subs = [
        subscription_row("a1", "a", "2023-03-01", "2024-07-10"),
        subscription_row("a2", "a", "2024-07-20", None),
    ]
    assert _label(subs) == 0


def test_resubscribe_after_grace_period_is_churn() -> None:
    subs = [
        subscription_row("a1", "a", "2023-03-01", "2024-07-10"),
        subscription_row("a2", "a", "2024-07-30", None),
    ]
    assert _label(subs) == 1


def test_annual_contract_ending_at_renewal_inside_horizon_is_churn() -> None:
    assert _label([subscription_row("a1", "a", "2023-07-15", "2024-07-15", period="annual")]) == 1


def test_annual_contract_renewed_as_new_row_is_not_churn() -> None:
    subs = [
        subscription_row("a1", "a", "2023-07-15", "2024-07-15", period="annual"),
        subscription_row("a2", "a", "2024-07-15", None, period="annual"),
    ]
    assert _label(subs) == 0


def test_overlapping_new_contract_keeps_the_customer() -> None:
    subs = [
        subscription_row("a1", "a", "2023-03-01", "2024-07-10"),
        subscription_row("a2", "a", "2024-06-05", "2025-01-01"),
    ]
    assert _label(subs) == 0


def test_all_of_several_active_subscriptions_must_end() -> None:
    subs = [
        subscription_row("a1", "a", "2023-03-01", "2024-06-10"),
        subscription_row("a2", "a", "2023-04-01", "2024-09-01"),
    ]
    assert _label(subs) == 0
    subs[1]["ended_at"] = "2024-07-01"
    assert _label(subs) == 1


def test_unobserved_horizon_gives_na_label() -> None:
    subs = [subscription_row("a1", "a", "2023-03-01", None)]
    labels = build_labels(label_tables(subs, end="2024-08-01"), CFG)
    assert labels["label"].isna().all()


def test_row_exactly_at_cutoff_belongs_to_the_future() -> None:
    # Starting at T: not active at T, so not in the population at T.
    tables = label_tables([subscription_row("a1", "a", "2024-06-01", None)])
    assert "a" not in set(active_population(tables, T, CFG)["customer_id"])
    # Ending at T: still active at T (the end is not known before T), and churns at T.
    assert _label([subscription_row("a1", "a", "2023-03-01", "2024-06-01")]) == 1


def test_min_tenure_filters_young_customers() -> None:
    subs = [
        subscription_row("a1", "a", "2024-05-20", None),
        subscription_row("b1", "b", "2024-01-01", None),
    ]
    tables = label_tables(subs)
    tables["customers"] = contract_frame(
        "customers",
        [
            {"customer_id": "a", "converted_at": "2024-05-20"},
            {"customer_id": "b", "converted_at": "2024-01-01"},
            {"customer_id": "zz", "converted_at": "2023-01-01"},
        ],
    )
    cfg = CFG.model_copy(update={"min_tenure_days": 30})
    population = active_population(tables, T, cfg)
    assert set(population["customer_id"]) == {"b", "zz"}
    assert population.set_index("customer_id").loc["b", "tenure_days"] == 152


def test_population_context_columns_and_dtypes() -> None:
    subs = [
        subscription_row("a1", "a", "2023-03-01", None, mrr=10.0),
        subscription_row("a2", "a", "2023-05-01", None, period="annual", mrr=50.0),
    ]
    tables = label_tables(subs)
    tables["subscription_changes"] = contract_frame(
        "subscription_changes",
        [
            {
                "subscription_id": "a1",
                "customer_id": "a",
                "effective_at": "2024-01-01",
                "change_type": "upgrade",
                "mrr_before": 10.0,
                "mrr_after": 80.0,
            },
            {
                "subscription_id": "a1",
                "customer_id": "a",
                "effective_at": "2024-06-01",
                "change_type": "upgrade",
                "mrr_before": 80.0,
                "mrr_after": 500.0,
            },
        ],
    )
    population = active_population(tables, T, CFG)
    assert list(population.columns) == list(LABEL_COLUMNS)
    assert population["cutoff"].dtype == "datetime64[us, UTC]"
    assert population["label"].dtype == "Int8" and population["label"].isna().all()
    assert population["tenure_days"].dtype == "int64"
    a = population.set_index("customer_id").loc["a"]
    assert a["mrr"] == 130.0  # the change at T is future
    assert a["billing_period"] == "monthly"  # a1 has the higher MRR at T


def test_ids_keep_their_order_in_ties_and_in_the_output() -> None:
    # The SQL works on integer codes of the ids: they must order as the ids do. As text,
    # "s9" > "s10" (the tie between x's equal subscriptions goes to s9, the highest id) and
    # customer "10" comes before "9".
    subs = [
        subscription_row("s10", "x", "2023-03-01", None),
        subscription_row("s9", "x", "2023-03-01", None, period="annual"),
        subscription_row("s1", "9", "2023-03-01", None),
        subscription_row("s2", "10", "2023-03-01", None),
    ]
    population = active_population(label_tables(subs), T, CFG)
    assert population["customer_id"].tolist() == ["10", "9", "x", "zz"]
    x = population.set_index("customer_id").loc["x"]
    assert x["billing_period"] == "annual"
    assert x["mrr"] == 20.0


def test_integer_ids_order_as_numbers() -> None:
    tables = label_tables(
        [
            subscription_row("s1", "9", "2023-03-01", None),
            subscription_row("s2", "10", "2023-03-01", None),
        ]
    )
    tables = {
        name: frame[frame["customer_id"] != "zz"].assign(
            customer_id=lambda f: f["customer_id"].astype("int64")
        )
        for name, frame in tables.items()
    }
    population = active_population(tables, T, CFG)
    assert population["customer_id"].tolist() == ["9", "10"]  # 9 < 10, then given as text


def test_ids_of_different_dtypes_across_tables_match_as_text() -> None:
    tables = label_tables([subscription_row("s1", "7", "2023-03-01", None)])
    # A hand-made subscriptions table with integer ids beside the customers' text ids. The
    # tenure counts from the conversion (before the first subscription): the two matched.
    tables["subscriptions"] = tables["subscriptions"][
        tables["subscriptions"]["customer_id"] == "7"
    ].assign(customer_id=7)
    customers = tables["customers"]
    customers.loc[customers["customer_id"] == "7", "converted_at"] = pd.Timestamp(
        "2023-02-01", tz="UTC"
    )
    population = active_population(tables, T, CFG)
    assert population["customer_id"].tolist() == ["7"]
    assert population["tenure_days"].tolist() == [(T - pd.Timestamp("2023-02-01", tz="UTC")).days]


def test_a_subscription_without_customer_belongs_to_no_population() -> None:
    tables = label_tables(
        [
            subscription_row("s1", "a", "2023-03-01", None),
            subscription_row("s2", "b", "2023-03-01", None),
        ]
    )
    subscriptions = tables["subscriptions"]
    subscriptions.loc[subscriptions["subscription_id"] == "s2", "customer_id"] = None
    labels = build_labels(tables, CFG)
    assert labels["customer_id"].tolist() == ["a", "zz"]
    assert labels["customer_id"].notna().all()


def test_min_tenure_counts_the_start_day_whole() -> None:
    cutoff = pd.Timestamp("2024-02-01", tz="UTC")
    subs = [subscription_row("a1", "a", "2024-01-01T00:06", None)]
    tables = label_tables(subs)
    tables["customers"] = contract_frame(
        "customers",
        [
            {"customer_id": "a", "converted_at": "2024-01-01T00:06"},
            {"customer_id": "zz", "converted_at": "2023-01-01"},
        ],
    )
    population = active_population(tables, cutoff, CFG.model_copy(update={"min_tenure_days": 31}))
    assert population.set_index("customer_id").loc["a", "tenure_days"] == 31
    younger = active_population(tables, cutoff, CFG.model_copy(update={"min_tenure_days": 32}))
    assert "a" not in set(younger["customer_id"])


def test_no_cutoff_or_population_raises() -> None:
    with pytest.raises(EmptyPopulationError):
        one = {
            "subscriptions": contract_frame(
                "subscriptions", [subscription_row("a1", "a", "2024-12-01", None)]
            )
        }
        build_labels(one, LabelConfig())  # shorter than min_history_days: no cutoff
    with pytest.raises(EmptyPopulationError):
        cfg = LabelConfig(first_cutoff=dt.date(2022, 1, 1), last_cutoff=dt.date(2022, 3, 1))
        build_labels(label_tables([subscription_row("a1", "a", "2024-01-01", None)]), cfg)
    with pytest.raises(DataContractError):
        build_labels({}, LabelConfig())


def test_run_label_writes_parquet(tmp_path, caplog) -> None:
    validated = tmp_path / "validated"
    validated.mkdir()
    tables = label_tables([subscription_row("a1", "a", "2023-03-01", "2024-07-10")])
    for name, frame in tables.items():
        frame.to_parquet(validated / f"{name}.parquet", index=False)
    params = parse_params({"label": {"first_cutoff": "2024-06-01", "last_cutoff": "2024-12-01"}})
    out = tmp_path / "labels" / "labels.parquet"
    with caplog.at_level("INFO"):
        run_label(params=params, validated_dir=validated, out_path=out)
    labels = pd.read_parquet(out)
    assert len(labels) > 0 and list(labels.columns) == list(LABEL_COLUMNS)
    assert "unobserved (scoring)" in caplog.text


# --- the end of the data and label sanity ------------------------------------------------------


def test_describe_cutoffs_counts_and_explains_unlabeled_cutoffs() -> None:
    subs = [
        subscription_row("a1", "a", "2023-03-01", "2024-07-10"),
        subscription_row("b1", "b", "2023-03-01", None),
        subscription_row("c1", "c", "2023-03-01", None),
    ]
    cfg = LabelConfig(first_cutoff=dt.date(2024, 6, 1), last_cutoff=dt.date(2024, 12, 1))
    tables = label_tables(subs)
    end = data_end(tables)
    labels = build_labels(tables, cfg, end)

    rows = {row["cutoff"]: row for row in describe_cutoffs(labels, cfg, end)}

    # Naive reference: a churns at 2024-06-01 (ends 07-10); population a, b, c, zz.
    assert rows["2024-06-01"] == {
        "cutoff": "2024-06-01",
        "population": 4,
        "labeled": True,
        "churners": 1,
        "churn_rate": 0.25,
        "unlabeled_reason": None,
    }
    assert rows["2024-12-01"]["labeled"] is False and rows["2024-12-01"]["churners"] is None
    assert rows["2024-12-01"]["unlabeled_reason"] == (
        "horizon 60 d + grace 14 d runs to 2025-02-13, past the data end 2025-01-01"
    )


def _random_export(seed: int, integer_ids: bool) -> dict[str, pd.DataFrame]:
    """Subscriptions of 60 customers shaped like a CRM export: renewals, re-subscriptions,
    paid-through ends after the data, open contracts and a row without a customer."""
    rng = np.random.default_rng(seed)
    rows = []
    for customer in range(60):
        start = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 500)))
        for number in range(int(rng.integers(1, 4))):
            end = start + pd.Timedelta(days=int(rng.integers(20, 400)))
            cid = 9000 + customer if integer_ids else f"c{customer}"
            rows.append(
                subscription_row(
                    f"s{customer}-{number}",
                    cid,  # type: ignore[arg-type]
                    str(start),
                    None if rng.random() < 0.2 else str(end),  # open, or ended (or paid through)
                    period=str(rng.choice(["monthly", "annual"])),
                    mrr=float(rng.choice([29.0, 99.0])),
                )
            )
            start = end + pd.Timedelta(days=int(rng.integers(0, 40)))
    rows.append(subscription_row("orphan", None, "2023-02-01", None))  # type: ignore[arg-type]
    subscriptions = contract_frame("subscriptions", rows)
    ids = subscriptions["customer_id"].dropna().unique()
    customers = contract_frame(
        "customers", [{"customer_id": c, "converted_at": "2022-12-01"} for c in ids]
    )
    if integer_ids:
        subscriptions["customer_id"] = subscriptions["customer_id"].astype("Int64")
        customers["customer_id"] = customers["customer_id"].astype("int64")
    return {"subscriptions": subscriptions, "customers": customers}


@pytest.mark.parametrize("integer_ids", [False, True])
@pytest.mark.parametrize("with_customers", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_count_labels_counts_what_build_labels_builds(seed, with_customers, integer_ids) -> None:
    tables = _random_export(seed, integer_ids)
    if not with_customers:
        del tables["customers"]
    cfg = LabelConfig(min_history_days=60, min_tenure_days=20, horizon_days=60, grace_days=14)
    end = pd.Timestamp("2024-06-30 23:59:59", tz="UTC")  # paid-through ends run past it

    counts = count_labels(tables, cfg, end)
    built = build_labels(tables, cfg, end)

    pd.testing.assert_frame_equal(counts, summarize_labels(built))
    assert describe_cutoff_counts(counts, cfg, end) == describe_cutoffs(built, cfg, end)
    # Naive reference of the totals: every built row counted once, its label once.
    assert counts["customers"].sum() == len(built)
    assert counts["churned"].sum() == built["label"].sum()
    assert counts["observed"].gt(0).any() and counts["observed"].eq(0).any()  # both kinds


def test_count_labels_stops_where_build_labels_stops() -> None:
    one = {
        "subscriptions": contract_frame(
            "subscriptions", [subscription_row("a1", "a", "2024-12-01", None)]
        )
    }
    cfg = LabelConfig(first_cutoff=dt.date(2022, 1, 1), last_cutoff=dt.date(2022, 3, 1))
    before = label_tables([subscription_row("a1", "a", "2024-01-01", None)])
    for tables, config in ((one, LabelConfig()), (before, cfg)):
        with pytest.raises(EmptyPopulationError) as built:
            build_labels(tables, config)
        with pytest.raises(EmptyPopulationError) as counted:
            count_labels(tables, config)
        assert str(counted.value) == str(built.value)


@pytest.mark.parametrize("integer_ids", [False, True])
def test_label_counts_agree_exactly_when_no_label_window_ends_between_the_ends(integer_ids):
    tables = _random_export(3, integer_ids)
    cfg = LabelConfig(min_history_days=60, min_tenure_days=20, horizon_days=60, grace_days=14)
    end = pd.Timestamp("2024-06-30 23:59:59", tz="UTC")
    cutoffs = build_cutoffs(tables, cfg, end)
    counts = count_labels_at(tables, cfg, cutoffs, end)
    pd.testing.assert_frame_equal(counts, count_labels(tables, cfg, end))
    # Other ends around the midnights where a cutoff's window (horizon + grace) ends.
    window = pd.Timedelta(days=cfg.horizon_days + cfg.grace_days)
    edges = [c + window for c in cutoffs if c + window > pd.Timestamp("2024-04-01", tz="UTC")]
    others = [e + pd.Timedelta(seconds=s) for e in edges[:3] for s in (-1, 0, 1)]
    others += [end + pd.Timedelta(hours=3), end - pd.Timedelta(hours=20)]
    kinds = set()
    for other in others:
        agree = label_counts_agree(cutoffs, cfg, end, other)
        same = count_labels_at(tables, cfg, cutoffs, other).equals(counts)
        assert label_counts_agree(cutoffs, cfg, other, end) == agree  # symmetric
        if agree:
            assert same, other  # reusing the counts is exact
        kinds.add((agree, same))
    assert (True, True) in kinds and (False, False) in kinds  # both kinds of end were tried
