"""The data contract: every raw table churn reads, its columns, types and rules, in one place.

Everything else derives from :data:`CONTRACT`: the column rules of ``churn ingest``, the
simulator's output layout, the feature families' inputs, and the generated documentation
(``docs/data-contract.md``, written by :func:`render_contract_markdown`).

Conventions (decided here, documented in the README):

* All timestamps are normalised to UTC by ingest. Naive timestamps are read in
  ``ingest.input_timezone``; strings with an offset (``2025-03-01T10:00:00+02:00``) keep it.
* Identifiers are strings.
* A user's own tables plug in through ``ingest.tables.<table>.columns`` (contract name -> user
  name) and ``ingest.tables.<table>.values`` (vocabulary mapping); no code changes. Mapping
  keys may be any scalar (``{1: monthly}``, ``{"1": monthly}``, ``{true: ...}``); keys and
  source values are compared as codes (:func:`code_key`), so the integer 1, the text "1" and
  "1.0" are the same code, and ``True`` is the same code as "true" and "True".
* Billing periods: ``monthly``, ``quarterly`` (3 months), ``semiannual`` (6 months) and
  ``annual`` (12 months). A subscription renews every :data:`BILLING_PERIOD_MONTHS` months
  after its start. Exports that give the period as a month count (1, 3, 6, 12, as numbers or
  text) need no mapping: :data:`BILLING_PERIOD_CODES` reads them (an explicit ``values``
  mapping wins). Other counts (2, 24) are not guessed: they fail the vocabulary rule.
* Optional tables may be absent. The feature families that need them are skipped, and the run
  says so.
* In *entity mode* only ``customers`` is read; it must carry a 0/1 label column and may carry any
  number of extra attribute columns, which become features as they are. It may also carry
  :data:`ENTITY_CUSTOMER_COLUMNS` (``mrr``), which can be mapped from the export's own name
  and fill ``expected_revenue_at_risk`` in scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

ColumnKind = Literal["string", "category", "timestamp", "float", "int", "bool"]

TIMESTAMP_DTYPE: Final = pd.DatetimeTZDtype(unit="us", tz="UTC")
"""The one time representation of every pipeline frame from ingest on (see :mod:`churn.sql`)."""

COLUMN_DTYPES: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "string": "str",
        "category": "str",
        "timestamp": TIMESTAMP_DTYPE,
        "float": "float64",
        "int": "Int64",
        "bool": "boolean",
    }
)
"""Contract column kind -> pandas dtype of the column in validated tables."""


@dataclass(frozen=True)
class ColumnSpec:
    """One contract column.

    Attributes:
        name: Canonical column name.
        kind: Logical type. ``category`` columns have a closed vocabulary (``allowed``) or an
            open one (``allowed`` empty).
        description: What the column holds, in plain language.
        required: The column must be present in the input.
        nullable: Missing values are allowed.
        allowed: Closed vocabulary for ``category`` columns.
        minimum: Inclusive lower bound for numbers.
        maximum: Inclusive upper bound for numbers.
        unit: Unit of measure, for documentation and reason sentences.
        time_rule: Timestamp columns only: what the time means and when the pipeline treats
            the value as known (point in time), as ingest, labels and features apply it.
    """

    name: str
    kind: ColumnKind
    description: str
    required: bool = True
    nullable: bool = False
    allowed: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    unit: str = ""
    time_rule: str = ""


@dataclass(frozen=True)
class OrderRule:
    """``later`` must not be before ``earlier`` on the same row (when both are present)."""

    earlier: str
    later: str


@dataclass(frozen=True)
class TableSpec:
    """One contract table.

    Attributes:
        name: Canonical table name (also the default file stem).
        description: What one row is.
        required: Whether the pipeline fails without it (events mode).
        columns: Column specs, in canonical order.
        key: Columns that must be unique together (empty: no key).
        references_customers: Rows must name a known ``customer_id``.
        order_rules: Timestamp pairs that must be ordered.
        event_time: The column that stamps when a row became known (used for point-in-time
            filtering and the future-dated rule).
        feature_family: The feature family fed by this table (documentation).
    """

    name: str
    description: str
    required: bool
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()
    references_customers: bool = True
    order_rules: tuple[OrderRule, ...] = ()
    event_time: str | None = None
    feature_family: str = ""
    _by_name: dict[str, ColumnSpec] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    @property
    def column_names(self) -> list[str]:
        """Canonical column names in contract order."""
        return [c.name for c in self.columns]

    @property
    def timestamp_columns(self) -> list[str]:
        """Names of timestamp columns."""
        return [c.name for c in self.columns if c.kind == "timestamp"]

    def column(self, name: str) -> ColumnSpec:
        """Return the spec of column ``name``.

        Raises:
            KeyError: If the table has no such column.
        """
        return self._by_name[name]


PRESALE_TOUCHPOINT_TYPES = (
    "ad_click",
    "email_open",
    "webinar",
    "demo",
    "sales_call",
    "pricing_page_view",
    "docs_view",
    "help_center_view",
)
POSTSALE_TOUCHPOINT_TYPES = (
    "onboarding_email_open",
    "onboarding_step_completed",
    "help_center_view",
    "community_post",
    "webinar",
)
SUBSCRIPTION_CHANGE_TYPES = (
    "upgrade",
    "downgrade",
    "discount_start",
    "discount_end",
    "price_increase",
    "price_decrease",
)
BILLING_PERIOD_MONTHS: Final[Mapping[str, int]] = MappingProxyType(
    {"monthly": 1, "quarterly": 3, "semiannual": 6, "annual": 12}
)
"""Billing period -> months between renewals (billing dates are ``started_at + k * N months``)."""
BILLING_PERIODS = tuple(BILLING_PERIOD_MONTHS)
BILLING_PERIOD_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {str(months): period for period, months in BILLING_PERIOD_MONTHS.items()}
)
"""Built-in ``billing_period`` mapping of month counts (as :func:`code_key` codes) to periods."""
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")

#: The rule of a row's own event time (the known-at column of an event table).
_EVENT_TIME_RULE = (
    "Event time: the row counts for a cutoff only if stamped before it; quarantined as "
    "future-dated if after the end of the `ingest.as_of` day (UTC); rows after the table's data "
    "end are quarantined as out_of_range."
)

_CUSTOMER_ID = ColumnSpec("customer_id", "string", "Customer identifier.")

CONTRACT: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            name="customers",
            description="One row per customer (account), from the CRM.",
            required=True,
            key=("customer_id",),
            references_customers=False,
            order_rules=(OrderRule("lead_created_at", "converted_at"),),
            event_time="converted_at",
            feature_family="acquisition",
            columns=(
                _CUSTOMER_ID,
                ColumnSpec(
                    "lead_created_at",
                    "timestamp",
                    "When the customer first became a lead (first marketing touch).",
                    required=False,
                    nullable=True,
                    time_rule=(
                        "Event time; quarantined as future-dated if after the end of the "
                        "`ingest.as_of` day (UTC); used only together with `converted_at` (a "
                        "customer exists from conversion on), so it never moves a row into the "
                        "past of a cutoff."
                    ),
                ),
                ColumnSpec(
                    "converted_at",
                    "timestamp",
                    "First purchase: when the lead became a paying customer.",
                    time_rule=(
                        "Event time (the table's event time): the customer is known from it; "
                        "quarantined as future-dated if after the end of the `ingest.as_of` day "
                        "(UTC); rows after the table's data end are quarantined as out_of_range."
                    ),
                ),
                ColumnSpec(
                    "acquisition_channel",
                    "category",
                    "Channel that won the customer (e.g. paid_search, referral, partner).",
                    required=False,
                    nullable=True,
                ),
                ColumnSpec(
                    "campaign",
                    "category",
                    "Marketing campaign attributed to the conversion.",
                    required=False,
                    nullable=True,
                ),
                ColumnSpec(
                    "segment",
                    "category",
                    "Customer segment, e.g. company size (smb, mid_market, enterprise).",
                    required=False,
                    nullable=True,
                ),
                ColumnSpec("country", "category", "Country code.", required=False, nullable=True),
                ColumnSpec(
                    "trial_days",
                    "int",
                    "Length of the free trial before conversion (0: no trial).",
                    required=False,
                    nullable=True,
                    minimum=0,
                    maximum=365,
                    unit="days",
                ),
            ),
        ),
        TableSpec(
            name="presale_touchpoints",
            description="Marketing and sales touches of a lead before conversion.",
            required=False,
            event_time="occurred_at",
            feature_family="acquisition",
            columns=(
                _CUSTOMER_ID,
                ColumnSpec(
                    "occurred_at",
                    "timestamp",
                    "When the touch happened.",
                    time_rule=_EVENT_TIME_RULE,
                ),
                ColumnSpec(
                    "touchpoint_type",
                    "category",
                    "Kind of touch; docs_view and help_center_view are after-sales content "
                    "read before buying.",
                    allowed=PRESALE_TOUCHPOINT_TYPES,
                ),
            ),
        ),
        TableSpec(
            name="subscriptions",
            description="One row per subscription contract (a renewal that starts a new "
            "contract is a new row).",
            required=True,
            key=("subscription_id",),
            order_rules=(OrderRule("started_at", "ended_at"),),
            event_time="started_at",
            feature_family="billing",
            columns=(
                ColumnSpec("subscription_id", "string", "Subscription identifier."),
                _CUSTOMER_ID,
                ColumnSpec("plan", "category", "Plan name (e.g. starter, pro, business)."),
                ColumnSpec(
                    "billing_period",
                    "category",
                    "Billing period, renewed every 1, 3, 6 or 12 months (month counts 1, 3, "
                    "6, 12 are read as these); contracts end only at a renewal date.",
                    allowed=BILLING_PERIODS,
                ),
                ColumnSpec(
                    "mrr",
                    "float",
                    "Monthly recurring revenue at the start of the subscription.",
                    minimum=0,
                    unit="currency/month",
                ),
                ColumnSpec(
                    "started_at",
                    "timestamp",
                    "Start of the subscription.",
                    time_rule=(
                        "Event time: the subscription exists (and counts as active) for a cutoff "
                        "only if it started before it; quarantined as future-dated if after the "
                        "end of the `ingest.as_of` day (UTC); rows after the table's data end are "
                        "quarantined as out_of_range."
                    ),
                ),
                ColumnSpec(
                    "ended_at",
                    "timestamp",
                    "End of the subscription; missing while it is active.",
                    nullable=True,
                    time_rule=(
                        "Scheduled or paid-through end: it may lie after `ingest.as_of` (exempt "
                        "from the future-dated rule and from the data end). The subscription is "
                        "active at a cutoff until it ends (an end at or after the cutoff is not "
                        "yet known there). Ends after the `as_of` day do not move the end of the "
                        "data; a cutoff whose horizon plus grace reaches past the data end gets "
                        "no label (censored: a scoring cutoff)."
                    ),
                ),
            ),
        ),
        TableSpec(
            name="subscription_changes",
            description="Upgrades, downgrades, discounts and price changes of a subscription.",
            required=False,
            event_time="effective_at",
            feature_family="billing",
            columns=(
                ColumnSpec("subscription_id", "string", "Subscription changed."),
                _CUSTOMER_ID,
                ColumnSpec(
                    "effective_at",
                    "timestamp",
                    "When the change takes effect.",
                    time_rule=(
                        "Event time: the change counts for a cutoff only if effective before it; "
                        "quarantined as future-dated if after the end of the `ingest.as_of` day "
                        "(UTC); rows after the table's data end are quarantined as out_of_range."
                    ),
                ),
                ColumnSpec(
                    "change_type",
                    "category",
                    "Kind of change.",
                    allowed=SUBSCRIPTION_CHANGE_TYPES,
                ),
                ColumnSpec(
                    "mrr_before",
                    "float",
                    "MRR just before the change.",
                    minimum=0,
                    unit="currency/month",
                ),
                ColumnSpec(
                    "mrr_after",
                    "float",
                    "MRR from the change on.",
                    minimum=0,
                    unit="currency/month",
                ),
            ),
        ),
        TableSpec(
            name="usage_events",
            description="Product usage events, one row per event (or per daily aggregate).",
            required=False,
            event_time="occurred_at",
            feature_family="usage",
            columns=(
                _CUSTOMER_ID,
                ColumnSpec(
                    "occurred_at",
                    "timestamp",
                    "When the event happened.",
                    time_rule=_EVENT_TIME_RULE,
                ),
                ColumnSpec(
                    "event_type",
                    "category",
                    "Kind of event (open vocabulary; see features.usage_event_types).",
                ),
                ColumnSpec(
                    "quantity",
                    "float",
                    "How many units the event represents (missing: 1).",
                    required=False,
                    nullable=True,
                    minimum=0,
                    unit="events",
                ),
            ),
        ),
        TableSpec(
            name="postsale_touchpoints",
            description="Onboarding, help-center, community and webinar touches after the sale.",
            required=False,
            event_time="occurred_at",
            feature_family="engagement",
            columns=(
                _CUSTOMER_ID,
                ColumnSpec(
                    "occurred_at",
                    "timestamp",
                    "When the touch happened.",
                    time_rule=_EVENT_TIME_RULE,
                ),
                ColumnSpec(
                    "touchpoint_type",
                    "category",
                    "Kind of touch.",
                    allowed=POSTSALE_TOUCHPOINT_TYPES,
                ),
            ),
        ),
        TableSpec(
            name="nps_responses",
            description="Net Promoter Score survey responses.",
            required=False,
            event_time="responded_at",
            feature_family="engagement",
            columns=(
                _CUSTOMER_ID,
                ColumnSpec(
                    "responded_at",
                    "timestamp",
                    "When the response arrived.",
                    time_rule=(
                        "Event time: the response counts for a cutoff only if it arrived before "
                        "it; quarantined as future-dated if after the end of the `ingest.as_of` "
                        "day (UTC); rows after the table's data end are quarantined as "
                        "out_of_range."
                    ),
                ),
                ColumnSpec(
                    "score",
                    "int",
                    "Likelihood to recommend, 0-10.",
                    minimum=0,
                    maximum=10,
                    unit="points",
                ),
            ),
        ),
        TableSpec(
            name="support_tickets",
            description="Support tickets with their life cycle and satisfaction rating.",
            required=False,
            key=("ticket_id",),
            order_rules=(
                OrderRule("opened_at", "first_response_at"),
                OrderRule("opened_at", "resolved_at"),
                OrderRule("resolved_at", "csat_received_at"),
            ),
            event_time="opened_at",
            feature_family="support",
            columns=(
                ColumnSpec("ticket_id", "string", "Ticket identifier."),
                _CUSTOMER_ID,
                ColumnSpec(
                    "opened_at",
                    "timestamp",
                    "When the ticket was opened.",
                    time_rule=(
                        "Event time: the ticket exists for a cutoff only if opened before it; "
                        "quarantined as future-dated if after the end of the `ingest.as_of` day "
                        "(UTC); rows after the table's data end are quarantined as out_of_range."
                    ),
                ),
                ColumnSpec(
                    "first_response_at",
                    "timestamp",
                    "First agent response; missing if none yet.",
                    nullable=True,
                    time_rule=(
                        "Known only once stamped before the cutoff: a response at or after the "
                        "cutoff does not exist yet there (the ticket is unanswered); quarantined "
                        "as future-dated if after the end of the `ingest.as_of` day (UTC)."
                    ),
                ),
                ColumnSpec(
                    "resolved_at",
                    "timestamp",
                    "When the ticket was (last) resolved; missing while open.",
                    nullable=True,
                    time_rule=(
                        "Known only once stamped before the cutoff: a ticket resolved at or after "
                        "the cutoff is still open there; quarantined as future-dated if after the "
                        "end of the `ingest.as_of` day (UTC)."
                    ),
                ),
                ColumnSpec(
                    "channel",
                    "category",
                    "Channel (email, chat, phone...).",
                    required=False,
                    nullable=True,
                ),
                ColumnSpec(
                    "category",
                    "category",
                    "Topic (billing, technical, how_to...).",
                    required=False,
                    nullable=True,
                ),
                ColumnSpec(
                    "priority", "category", "Priority.", allowed=TICKET_PRIORITIES, nullable=True
                ),
                ColumnSpec(
                    "reopened",
                    "bool",
                    "Whether the ticket was reopened after a resolution.",
                    required=False,
                    nullable=True,
                ),
                ColumnSpec(
                    "csat_score",
                    "int",
                    "Customer satisfaction rating 1-5; often missing.",
                    required=False,
                    nullable=True,
                    minimum=1,
                    maximum=5,
                    unit="points",
                ),
                ColumnSpec(
                    "csat_received_at",
                    "timestamp",
                    "When the CSAT rating arrived (it counts only from then on).",
                    required=False,
                    nullable=True,
                    time_rule=(
                        "Known only once stamped before the cutoff: the CSAT score counts from "
                        "this time on; a score without it cannot be placed in time and is ignored;"
                        " quarantined as future-dated if after the end of the `ingest.as_of` day "
                        "(UTC)."
                    ),
                ),
            ),
        ),
        TableSpec(
            name="retention_actions",
            description=(
                "Logged retention contacts: who was contacted when with which play, and who "
                "was held out in a random control group (used by `churn target` to learn each "
                "play's effect; never a feature)."
            ),
            required=False,
            event_time="action_at",
            columns=(
                _CUSTOMER_ID,
                ColumnSpec(
                    "action_at", "timestamp", "When the contact was made (or would have been, "
                    "for the control group).", time_rule=_EVENT_TIME_RULE,
                ),
                ColumnSpec(
                    "play", "category", "Play of the playbook (a key of `target.plays`; map "
                    "other codes with `ingest.tables.retention_actions.values`)."
                ),
                ColumnSpec(
                    "control", "bool", "True: chosen but randomly held out (not contacted)."
                ),
            ),
        ),
    )
}

NUMERIC_SHARE: Final = 0.99
"""Entity mode: share of an attribute's non-blank values that must parse for it to be numeric."""

EVENT_TABLES: tuple[str, ...] = tuple(name for name in CONTRACT if name != "customers")

ENTITY_CUSTOMER_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(
        "mrr",
        "float",
        "Entity mode: monthly revenue of the customer (fills expected_revenue_at_risk).",
        required=False,
        nullable=True,
        minimum=0,
        unit="currency/month",
    ),
)
"""Columns ``customers`` may also carry in entity mode (and ``ingest.tables.customers.columns``
may map), on top of its contract columns; typed and checked like them."""

BUILT_IN_VALUE_CODES: Final[Mapping[tuple[str, str], Mapping[str, str]]] = MappingProxyType(
    {("subscriptions", "billing_period"): BILLING_PERIOD_CODES}
)
"""(table, column) -> codes read without a ``values`` mapping (a user's mapping wins)."""


_TRUE_TEXT = frozenset({"true", "yes", "on"})
_FALSE_TEXT = frozenset({"false", "no", "off"})


def code_key(value: Any) -> str | None:
    """The code a source value or a mapping key stands for, so that types do not matter.

    Booleans, and the text YAML 1.1 reads as booleans ("true"/"false", "yes"/"no", "on"/"off"
    in any case), become ``"true"``/``"false"``: an unquoted ``Yes:`` key in params.yaml
    arrives as ``True`` and must still match the text "Yes" in an export. Numbers
    and numeric text that are whole become the integer's text (``1``, ``1.0``, ``"1"``,
    ``" 1.0 "`` -> ``"1"``), other numbers their shortest float text (``2.5`` -> ``"2.5"``);
    any other text is kept as written (stripped). Missing values have no code.

    Args:
        value: One scalar.

    Returns:
        The code, or ``None`` for a missing value.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _TRUE_TEXT:
            return "true"
        if text.lower() in _FALSE_TEXT:
            return "false"
        try:
            number = float(text)
        except ValueError:
            return text
        # "nan"/"inf" and other non-finite text stay text; so does text pandas reads as text.
        return _number_code(number) if math.isfinite(number) else text
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        if isinstance(value, int | np.integer):
            return str(int(value))
        return _number_code(number)
    return str(value)


def _number_code(number: float) -> str:
    """A finite number as code text: whole numbers without ``.0``."""
    if number.is_integer() and abs(number) < 2.0**53:
        return str(int(number))
    return repr(number)


def map_codes(values: pd.Series, mapping: Mapping[Any, str]) -> pd.Series:
    """Map a column's codes through ``mapping``, comparing both as :func:`code_key` codes.

    Args:
        values: A column as read (any dtype).
        mapping: {source value (any scalar): contract value}.

    Returns:
        An ``object`` column: mapped values where the code is a key, else the value as read
        (so unmapped values still meet the vocabulary rule); missing stays missing.
    """
    by_code = {code_key(key): target for key, target in mapping.items()}
    codes = values.astype("object").map(code_key)
    mapped = codes.map(by_code)
    return values.astype("object").where(mapped.isna(), mapped)


def rename_to_contract(
    frame: pd.DataFrame,
    columns: Mapping[str, str],
    values: Mapping[str, Mapping[Any, str]] | None = None,
) -> pd.DataFrame:
    """Rename a user's columns (and vocabulary) to contract names.

    Args:
        frame: The user's table as read.
        columns: Contract column name -> user column name.
        values: Contract column -> {user value: contract value}; keys of any scalar type match
            source values of any type holding the same code (:func:`code_key`). Values not
            listed are kept as read.

    Returns:
        A new frame with contract names. Unmapped columns are kept unchanged.

    Raises:
        KeyError: If a mapped user column is not in ``frame``.
    """
    missing = sorted(src for src in columns.values() if src not in frame.columns)
    if missing:
        raise KeyError(f"mapped column(s) {missing} not found; the table has {list(frame.columns)}")
    out = frame.rename(columns={src: dst for dst, src in columns.items()})
    for column, mapping in (values or {}).items():
        if column in out.columns:
            out[column] = map_codes(out[column], mapping)
    return out


def render_contract_markdown() -> str:
    """Render the contract as Markdown (the body of ``docs/data-contract.md``)."""
    lines = [
        "# Data contract",
        "",
        "Generated from `src/churn/domain/contract.py` by `churn contract`; do not edit by hand.",
        "",
        "Timestamps are normalised to UTC at ingest; naive ones are read in "
        "`ingest.input_timezone`. Map your own column names with "
        "`ingest.tables.<table>.columns` (contract name: your name) and vocabularies with "
        "`ingest.tables.<table>.values`.",
        "",
    ]
    for spec in CONTRACT.values():
        status = "required" if spec.required else "optional"
        lines += [f"## `{spec.name}` ({status})", "", spec.description, ""]
        if spec.key:
            lines.append(f"- Unique key: `{', '.join(spec.key)}`")
        if spec.references_customers:
            lines.append("- Every `customer_id` must exist in `customers`.")
        for rule in spec.order_rules:
            lines.append(f"- `{rule.later}` must not be before `{rule.earlier}`.")
        if spec.event_time:
            lines.append(
                f"- Rows are known from `{spec.event_time}` (the event time). A row with a "
                "timestamp after the end of the `ingest.as_of` day (UTC) is quarantined as "
                "`future_dated` (scheduled ends excepted, see the time rules); a row whose "
                f"`{spec.event_time}` lies after the table's data end (`ingest.data_end`, or "
                "a stray row far past the rest) is quarantined as `out_of_range`."
            )
        if spec.feature_family:
            lines.append(f"- Feeds the `{spec.feature_family}` feature family.")
        timed = [col for col in spec.columns if col.kind == "timestamp"]
        if timed:
            lines += ["", "Time rules:", ""]
            lines += [f"- `{col.name}`: {col.time_rule}" for col in timed]
        lines += [
            "",
            "| column | type | required | nullable | rule | description |",
            "|---|---|---|---|---|---|",
        ]
        for col in spec.columns:
            rule = []
            if col.allowed:
                rule.append("one of " + ", ".join(col.allowed))
            if col.minimum is not None:
                rule.append(f">= {col.minimum:g}")
            if col.maximum is not None:
                rule.append(f"<= {col.maximum:g}")
            lines.append(
                f"| `{col.name}` | {col.kind} | {'yes' if col.required else 'no'} | "
                f"{'yes' if col.nullable else 'no'} | {'; '.join(rule)} | {col.description} |"
            )
        lines.append("")
    lines += [
        "## Entity-level mode (`ingest.mode: entity`)",
        "",
        "Only `customers` is read. It needs `customer_id` and the 0/1 label column named by "
        "`ingest.label_column` (default `churned`); every other column is an attribute that "
        "becomes a feature as it is (numbers stay numbers, text becomes a category). There are "
        "no cutoffs: training uses a stratified random split.",
        "",
        "It may also carry these columns (map them from your names with "
        "`ingest.tables.customers.columns`):",
        "",
    ]
    for col in ENTITY_CUSTOMER_COLUMNS:
        lines.append(f"- `{col.name}` ({col.kind}, >= {col.minimum:g}): {col.description}")
    lines += [
        "",
        "An attribute column is numeric when at least "
        f"{NUMERIC_SHARE:.0%} of its non-blank values parse as numbers (a decimal comma, "
        '"29,85", is read as a decimal point; blank cells are missing); the few that do '
        "not parse are quarantined under `<column>:not_a_number` and counted in the report. "
        "Below that share the column is text (a category).",
        "",
        "## Codes in `ingest.tables.<table>.values`",
        "",
        'Keys may be numbers, booleans or text: `{1: monthly}`, `{"1": monthly}` and '
        '`{true: ...}` match source columns holding integers, numeric text ("1", "1.0") '
        "or booleans alike. `billing_period` month counts 1, 3, 6 and 12 are read as "
        "monthly, quarterly, semiannual and annual without a mapping.",
        "",
    ]
    return "\n".join(lines)
