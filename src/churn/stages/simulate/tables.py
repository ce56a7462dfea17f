"""Assembly: the world's arrays after the month loop -> contract tables and truth tables.

Ground truth (``SimulationResult.truth``)
    ``customer_months``: one row per customer and month in which the customer is active at the
    month start: ``customer_id``, ``month_start``, ``churn_probability``, ``logit_<family>``,
    ``logit_exposure`` (the annual renewal bump, apart from ``logit_billing``), ``logit_base``,
    ``logit_retention`` (the past retention team's plays, 0 when off,
    :mod:`~churn.stages.simulate.retention`), ``logit_total`` (their sum), ``renewal_month``
    (the contract can end this month), ``disengaged``, ``churned`` (the subscription ends
    this month) and ``end_if_churned`` (the billing date in the month, on which the
    subscription ends when the customer churns this month; the oracle needs it because a
    label window can end inside a month, :mod:`churn.model.oracle`), ``billing_anchor`` (the
    conversion, from which the billing days count) and
    ``annual_contract`` (the contract's schedule: the oracle's months after a churn).
    ``customers``: ``customer_id``, ``churned_at`` (NaT if none), the latent traits
    (:data:`~churn.stages.simulate.world.LATENT_TRAITS`) and ``disengaged_at`` (first
    disengagement, or the window start for customers already disengaged then).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.domain.contract import (
    BILLING_PERIODS,
    CONTRACT,
    POSTSALE_TOUCHPOINT_TYPES,
    PRESALE_TOUCHPOINT_TYPES,
    SUBSCRIPTION_CHANGE_TYPES,
    TICKET_PRIORITIES,
)
from churn.domain.families import FAMILIES
from churn.stages.simulate import mess
from churn.stages.simulate.arrays import _NAT, _ids, _labels, _month_number, _Rows
from churn.stages.simulate.sinks import MonthlyTable
from churn.stages.simulate.world import (
    _ANNUAL,
    _MONTHLY,
    _POSTSALE,
    CHANNELS,
    COUNTRIES,
    PLANS,
    SEGMENTS,
    TICKET_CATEGORIES,
    TICKET_CHANNELS,
    World,
)


@dataclass(frozen=True)
class SimulationResult:
    """Output of :func:`~churn.stages.simulate.engine.simulate`.

    Attributes:
        tables: Contract table name -> raw table with exactly the contract columns.
        truth: ``customer_months`` (true monthly hazard and its log-odds terms) and
            ``customers`` (true churn date and latent traits). Never read by training.
    """

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]


@dataclass
class Outputs:
    """Rows collected over the month loop, one collector per output.

    The two that grow with customers x months (``usage`` and the ``truth``'s customer months)
    become rows month by month and go to a sink (:mod:`~churn.stages.simulate.sinks`); the
    others are sorted across months at assembly, so their arrays are kept until then.
    """

    usage: MonthlyTable
    touches: _Rows
    nps: _Rows
    tickets: list[dict[str, np.ndarray]]
    truth: MonthlyTable


def _utc(seconds: np.ndarray) -> pd.Series:
    """Seconds since the epoch (``_NAT`` for missing) as ``datetime64[us, UTC]``."""
    values = np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")
    return pd.Series(values, dtype="datetime64[us, UTC]")


def _frame(table: str, columns: dict[str, pd.Series | np.ndarray]) -> pd.DataFrame:
    """A contract table: columns in contract order, ``int`` columns as nullable ``Int64``."""
    spec = CONTRACT[table]
    return pd.DataFrame({
        c.name: pd.Series(columns[c.name], dtype="Int64") if c.kind == "int" else columns[c.name]
        for c in spec.columns
    }).reset_index(drop=True)


def _event_table(w: World, table: str, rows: dict[str, np.ndarray],
                 vocabulary: tuple[str, ...] = ()) -> pd.DataFrame:
    """An event table (customer, time, optional type and value) sorted by time and customer.

    Args:
        w: The world (for customer ids).
        table: Contract table name; its second column is the event time and its third, if
            any, takes ``rows["type"]`` (codes into ``vocabulary``) or ``rows["value"]``.
        rows: ``customer`` and ``time`` arrays, plus ``type`` or ``value``.
        vocabulary: Labels of the ``type`` codes.

    Returns:
        The contract table.
    """
    _, time_column, third = CONTRACT[table].column_names
    keys = [rows["customer"], rows["time"]]
    if "type" in rows:
        keys.insert(0, rows["type"])
    order = np.lexsort(keys)
    third_values = (_labels(vocabulary, rows["type"][order]) if "type" in rows
                    else rows["value"][order])
    return _frame(table, {
        "customer_id": w.customer_id(rows["customer"][order]),
        time_column: _utc(rows["time"][order]),
        third: third_values,
    })


def assemble(w: World, presale: dict[str, np.ndarray], out: Outputs) -> SimulationResult:
    """Turn the world's arrays after the month loop into contract tables and truth frames.

    ``usage_events`` and the ``customer_months`` truth are not among them: they were built
    month by month (:func:`usage_frame`, :func:`customer_months_frame`) and went to their sinks.
    """
    tables = {
        "customers": _customers_table(w),
        "presale_touchpoints": _event_table(w, "presale_touchpoints", presale,
                                            PRESALE_TOUCHPOINT_TYPES),
        **_subscription_tables(w),
        "postsale_touchpoints": _event_table(w, "postsale_touchpoints", _postsale_rows(w, out),
                                             POSTSALE_TOUCHPOINT_TYPES),
        "nps_responses": _event_table(w, "nps_responses", out.nps.concat()),
        "support_tickets": _support_tickets(w, out.tickets),
    }
    if w.cfg.mess:  # usage rows were duplicated month by month already
        mess.duplicate_event_tables(tables, w.mess_rng)
    return SimulationResult(
        tables={name: tables[name] for name in CONTRACT if name in tables},
        truth={"customers": _truth_customers(w)},
    )


def _customers_table(w: World) -> pd.DataFrame:
    """The CRM table; campaigns are named after their stem and the lead's quarter."""
    lead_month = _month_number(w.lead_created)
    quarter = np.char.add(np.char.add((1970 + lead_month // 12).astype(str), "q"),
                          ((lead_month % 12) // 3 + 1).astype(str))
    stem = w.campaign_stems[np.maximum(w.campaign_stem, 0)]
    campaign = np.char.add(np.char.add(stem, "_"), quarter).astype(object)
    campaign[w.campaign_stem < 0] = None  # organic search and referrals carry no campaign
    customers = _frame("customers", {
        "customer_id": w.customer_id(np.arange(w.n)),
        "lead_created_at": _utc(w.lead_created),
        "converted_at": _utc(w.converted),
        "acquisition_channel": _labels(CHANNELS, w.channel),
        "campaign": pd.Series(campaign, dtype="str"),
        "segment": _labels(SEGMENTS, w.segment),
        "country": _labels(COUNTRIES, w.country),
        "trial_days": w.trial_days,
    })
    if w.cfg.mess:
        mess.blank_customers(customers, w.mess_rng)
    return customers


def _subscription_tables(w: World) -> dict[str, pd.DataFrame]:
    """``subscriptions`` (one per customer) and ``subscription_changes``."""
    subscription_ids = pa.array(_ids("S", w.n, w.id_width), type=pa.large_string())
    subscriptions = _frame("subscriptions", {
        "subscription_id": subscription_ids.to_pandas(),
        "customer_id": w.customer_id(np.arange(w.n)),
        "plan": _labels(PLANS, w.start_plan),
        "billing_period": _labels(BILLING_PERIODS, np.where(w.annual, _ANNUAL, _MONTHLY)),
        "mrr": w.start_mrr,
        "started_at": _utc(w.converted),
        "ended_at": _utc(w.ended),
    })
    changes = w.changes.concat()
    order = np.lexsort((changes["type"], changes["customer"], changes["time"]))
    customer = changes["customer"][order]
    subscription_changes = _frame("subscription_changes", {
        "subscription_id": pc.take(subscription_ids, pa.array(customer)).to_pandas(),
        "customer_id": w.customer_id(customer),
        "effective_at": _utc(changes["time"][order]),
        "change_type": _labels(SUBSCRIPTION_CHANGE_TYPES, changes["type"][order]),
        "mrr_before": changes["before"][order],
        "mrr_after": changes["after"][order],
    })
    return {"subscriptions": subscriptions, "subscription_changes": subscription_changes}


def usage_frame(w: World, rows: dict[str, np.ndarray]) -> pd.DataFrame:
    """One month's ``usage_events`` rows from arrays already sorted (and duplicated).

    Args:
        w: The world (customer ids and event type names).
        rows: ``customer`` (index), ``time`` (microseconds), ``type`` (code) and ``qty``.
    """
    return _frame("usage_events", {
        "customer_id": w.customer_id(rows["customer"]),
        "occurred_at": pd.Series(rows["time"].view("datetime64[us]"),
                                 dtype="datetime64[us, UTC]"),
        "event_type": pc.take(w.usage_event_types, pa.array(rows["type"])).to_pandas(),
        "quantity": rows["qty"],
    })


def _postsale_rows(w: World, out: Outputs) -> dict[str, np.ndarray]:
    """Monthly post-sale touches plus onboarding ones (timed at conversion) before the end."""
    end = np.where(w.ended == _NAT, w.window_end, w.ended)
    parts = [out.touches.concat()]
    for kind, times in (("onboarding_email_open", w.email_opens),
                        ("onboarding_step_completed", w.step_times)):
        keep = (times != _NAT) & (times < end[:, None])
        customer = np.nonzero(keep)[0]
        parts.append({"customer": customer, "time": times[keep],
                      "type": np.full(len(customer), _POSTSALE[kind])})
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def customer_months_frame(w: World, rows: dict[str, np.ndarray]) -> pd.DataFrame:
    """One month's rows of the ``customer_months`` truth (hazard and its terms).

    Args:
        w: The world (customer ids and month starts).
        rows: The month's arrays as the engine records them (``customer``, ``month``, the
            family terms, ``hazard`` and the flags).
    """
    month_starts = w.month_start(np.arange(w.months))
    return pd.DataFrame({
        "customer_id": w.customer_id(rows["customer"]),
        "month_start": _utc(month_starts[rows["month"]]),
        "churn_probability": rows["hazard"],
        **{f"logit_{family}": rows[family] for family in FAMILIES},
        "logit_exposure": rows["exposure"],
        "logit_base": rows["base"],
        "logit_retention": rows["retention"],
        "logit_total": rows["total"],
        "renewal_month": rows["renewal"],
        "disengaged": rows["disengaged"],
        "churned": rows["churned"],
        "end_if_churned": _utc(rows["end_if_churned"]),
        "billing_anchor": _utc(rows["converted"]),
        "annual_contract": rows["annual"],
    })


def _truth_customers(w: World) -> pd.DataFrame:
    """The ``customers`` truth: churn date, latent traits and first disengagement."""
    return pd.DataFrame({
        "customer_id": w.customer_id(np.arange(w.n)),
        "churned_at": _utc(w.ended),
        "product_fit": w.fit,
        "price_sensitivity": w.price_sensitivity,
        "support_need": w.support_need,
        "usage_intensity": w.intensity,
        "disengaged_at": _utc(w.disengaged_at),
    })


def _support_tickets(w: World, months: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """The support_tickets table as seen at the window end (later times not yet known)."""
    tk = {k: np.concatenate([m[k] for m in months]) for k in months[0]}
    order = np.lexsort((tk["customer"], tk["opened"]))
    tk = {k: v[order] for k, v in tk.items()}
    for column in ("first_response", "resolved", "csat_time"):
        tk[column] = np.where(tk[column] < w.window_end, tk[column], _NAT)
    unresolved = tk["resolved"] == _NAT
    tk["reopened"] = tk["reopened"] & ~unresolved
    rated = tk["csat_time"] != _NAT
    times = {"opened_at": tk["opened"], "first_response_at": tk["first_response"],
             "resolved_at": tk["resolved"], "csat_received_at": tk["csat_time"]}
    if w.cfg.mess:
        stamps = mess.ticket_time_strings(times, len(order), w.mess_rng)
    else:
        stamps = {name: _utc(value) for name, value in times.items()}
    frame = _frame("support_tickets", {
        "ticket_id": _ids("T", len(order), max(8, len(str(len(order))))),
        "customer_id": w.customer_id(tk["customer"]),
        **stamps,
        "channel": _labels(TICKET_CHANNELS, tk["channel"]),
        "category": _labels(TICKET_CATEGORIES, tk["category"]),
        "priority": _labels(TICKET_PRIORITIES, tk["priority"]),
        "reopened": pd.Series(tk["reopened"], dtype="boolean"),
        "csat_score": pd.arrays.IntegerArray(np.where(rated, tk["csat"], 0), ~rated),
    })
    if w.cfg.mess:
        mess.blank_tickets(frame, w.mess_rng)
    return frame


def monthly_churn_rate(truth: dict[str, pd.DataFrame]) -> float:
    """Churned customer-months over customer-months active at the month start."""
    months = truth["customer_months"]
    return float(months["churned"].mean()) if len(months) else 0.0

