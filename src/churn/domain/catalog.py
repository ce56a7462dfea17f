"""The feature catalog: one entry per feature column, shared by explanations and reports.

Every family module declares a :class:`FeatureSpec` for each column it produces. Reason sentences
are built as ``f"{value} {unit?} {description}"``, so a description is a lowercase noun phrase
that reads after a number ("4 support tickets opened in the last 30 days").

This module is the one definition of the catalog: :class:`FeatureSpec` is its only entry type,
:func:`validate_catalog_frame` / :func:`read_catalog` its only validator and CSV reader (training,
scoring, explanation, the report and Spark all read catalogs through them), :data:`KEY_COLUMNS`
the non-feature columns of a features frame and :data:`KIND_DTYPES` the pandas dtype of each
feature kind.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

import pandas as pd

from churn.domain.families import FAMILIES, PHASES, PROFILE_FAMILY, UNKNOWN, Phase
from churn.errors import DataContractError, ModelError

Kind = Literal["numeric", "categorical"]

REQUIRED_CATALOG_COLUMNS = ("name", "family", "phase", "kind", "unit", "description")
"""Columns every catalog must have."""

OPTIONAL_CATALOG_COLUMNS = ("reason_eligible", "singular")
"""Columns a catalog may lack (an older catalog): then derived, see :class:`FeatureSpec`."""

CATALOG_COLUMNS = (*REQUIRED_CATALOG_COLUMNS, *OPTIONAL_CATALOG_COLUMNS)
"""Columns of a catalog frame and CSV, in order."""

EXPOSURE_NAME = re.compile(
    r"(days_to_|renewal|billing_period|billing_cycle|billing_interval|contract|"
    r"(^|_)term($|_)|next_billing|tenure)"
)
"""Names of exposure and contract-timing features: they say *when* a customer can leave
(renewal dates, billing period, contract term, tenure and so the position in the contract's
cycle), not *why*, so they are never given as reasons (``reason_eligible`` False) unless a
catalog says otherwise. Applied to catalogs without the column and to user-mapped profile
columns (a telecom ``Contract`` column)."""

CUSTOMER_ID: Final = "customer_id"
CUTOFF: Final = "cutoff"
LABEL: Final = "label"
KEY_COLUMNS = (CUSTOMER_ID, CUTOFF, LABEL)
"""Columns of the features frame that are not features."""

#: The billing family's monthly revenue at the cutoff: score and the scoring rows read it for
#: the revenue at risk. Named here, not in the model library, so that a stage that only
#: checks for the column need not import LightGBM (1 s of the features stage's start).
MRR_FEATURE: Final = "mrr_at_cutoff"

KIND_DTYPES: Final = MappingProxyType({"numeric": "float64", "categorical": "str"})
"""Feature kind -> pandas dtype of its column in every features frame (``str``: pandas 3's
string dtype, missing values as NaN)."""

_KNOWN_FAMILIES = frozenset((*FAMILIES, PROFILE_FAMILY, UNKNOWN))
_KNOWN_PHASES = frozenset((*PHASES, UNKNOWN))

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column.

    Attributes:
        name: Column name (snake_case; says what it measures).
        family: Feature family (one of :data:`churn.domain.families.FAMILIES`, ``profile``, or
            ``unknown`` for a model feature the catalog does not describe).
        phase: Customer-journey phase, ``pre_sale`` or ``post_sale`` (``unknown`` as above).
        kind: ``numeric`` (float64) or ``categorical`` (pandas ``str``).
        unit: Unit of measure, or empty.
        description: Lowercase noun phrase that reads after a number.
        reason_eligible: Whether the feature may be given as a reason. ``None`` derives it
            from the name (:data:`EXPOSURE_NAME`): exposure and contract timing are not.
        singular: The description read after the number 1 ("support ticket opened in the last
            30 days"); ``""`` derives it from a plural unit (:func:`singular_description`).
    """

    name: str
    family: str
    phase: Phase | Literal["unknown"]
    kind: Kind
    unit: str
    description: str
    reason_eligible: bool | None = None
    singular: str = ""

    def __post_init__(self) -> None:
        # Frozen dataclass: the derived defaults are the only writes after construction.
        if self.reason_eligible is None:
            object.__setattr__(self, "reason_eligible", not EXPOSURE_NAME.search(self.name))
        if not self.singular:
            object.__setattr__(
                self, "singular", singular_description(self.description, self.unit)
            )
        if not _NAME.match(self.name) or self.name in KEY_COLUMNS:
            raise ValueError(f"invalid feature name {self.name!r}")
        if self.family not in _KNOWN_FAMILIES:
            raise ValueError(f"{self.name}: family must be one of {sorted(_KNOWN_FAMILIES)}")
        if self.phase not in _KNOWN_PHASES:
            raise ValueError(f"{self.name}: phase must be one of {sorted(_KNOWN_PHASES)}")
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"{self.name}: kind must be numeric or categorical")
        if not self.description or self.description[0].isupper():
            raise ValueError(f"{self.name}: description must be a lowercase noun phrase")


def singular_noun(plural: str) -> str:
    """Return the singular of a plural unit noun ("tickets" -> "ticket", "touches" -> "touch")."""
    if re.search(r"(ch|sh|ss|x)es$", plural):
        return plural[:-2]
    if plural.endswith("ies"):
        return plural[:-3] + "y"
    if plural.endswith("s") and not plural.endswith("ss"):
        return plural[:-1]
    return plural


def singular_description(description: str, unit: str) -> str:
    """Return the description for a count of one: the unit's noun made singular.

    The unit of a count is a plural noun ("tickets", "days") that the description repeats
    ("support tickets opened in the last 30 days"); its first whole-word occurrence is made
    singular ("support ticket opened in the last 30 days"). Only the first three words are
    searched, where the counted noun stands ("change in NPS points" is not a count of points);
    other descriptions are returned unchanged.
    """
    unit = unit.strip().lower()
    words = description.split(" ")
    if not unit.isalpha() or singular_noun(unit) == unit or unit not in words[:3]:
        return description  # the count's noun leads the phrase, else it is not what is counted
    words[words.index(unit)] = singular_noun(unit)
    return " ".join(words)


def slug(text: str) -> str:
    """Turn free text (an event type, a category, a column name) into a name fragment."""
    return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_") or "blank"


def catalog_frame(specs: Iterable[FeatureSpec]) -> pd.DataFrame:
    """Return the catalog as a frame with :data:`CATALOG_COLUMNS`.

    Every column is pandas ``str`` except ``reason_eligible`` (``bool``).
    """
    rows = [asdict(spec) for spec in specs]
    frame = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
    text = [c for c in CATALOG_COLUMNS if c != "reason_eligible"]
    return frame.astype({**dict.fromkeys(text, "str"), "reason_eligible": "bool"})


def ineligible_features(catalog: pd.DataFrame) -> frozenset[str]:
    """Return the names of a catalog's features that are never given as reasons.

    Args:
        catalog: A catalog frame (validated or not; without ``reason_eligible`` the names
            decide, see :data:`EXPOSURE_NAME`).
    """
    return frozenset(spec.name for spec in catalog_specs(catalog) if not spec.reason_eligible)


_TRUE_TEXT = frozenset({"true", "1", "yes"})
_FALSE_TEXT = frozenset({"false", "0", "no"})


def _eligible_cell(value: object) -> bool | None:
    """Parse a ``reason_eligible`` cell: a boolean, or None (derive) when missing or empty."""
    text = _cell(value).lower()
    if text in _TRUE_TEXT:
        return True
    if text in _FALSE_TEXT:
        return False
    if text:
        raise ValueError(f"reason_eligible must be true or false, got {text!r}")
    return None


def check_catalog(specs: Sequence[FeatureSpec], columns: Iterable[str]) -> None:
    """Check that names are unique and every feature column has exactly one entry.

    Args:
        specs: Catalog entries.
        columns: Feature columns produced (key columns are ignored).

    Raises:
        ValueError: Naming the duplicated, undocumented or missing features.
    """
    names = Counter(spec.name for spec in specs)
    duplicated = sorted(name for name, count in names.items() if count > 1)
    produced = [c for c in columns if c not in KEY_COLUMNS]
    produced_twice = sorted(name for name, count in Counter(produced).items() if count > 1)
    undocumented = sorted(set(produced) - set(names))
    missing = sorted(set(names) - set(produced))
    problems = [
        f"{label}: {items}"
        for label, items in (
            ("duplicated catalog names", duplicated),
            ("columns produced twice", produced_twice),
            ("columns without a catalog entry", undocumented),
            ("catalog entries without a column", missing),
        )
        if items
    ]
    if problems:
        raise ValueError("feature catalog mismatch: " + "; ".join(problems))


def feature_dtypes(specs: Iterable[FeatureSpec]) -> dict[str, str]:
    """Return feature name -> pandas dtype (:data:`KIND_DTYPES`) for catalog entries."""
    return {spec.name: KIND_DTYPES[spec.kind] for spec in specs}


def uncatalogued_spec(name: str, kind: Kind) -> FeatureSpec:
    """Return the entry of a feature the catalog does not describe (a model saved without one).

    Family and phase are ``unknown``; the description is the name in words.
    """
    return FeatureSpec(name, UNKNOWN, UNKNOWN, kind, "", name.replace("_", " "))


def _cell(value: object) -> str:
    """Return a catalog cell as stripped text; a missing cell (NaN, None, NA) is empty."""
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return ""
    return str(value).strip()


def catalog_specs(
    catalog: pd.DataFrame, source: str = "feature catalog"
) -> tuple[FeatureSpec, ...]:
    """Validate a catalog frame and return its entries, in row order.

    Args:
        catalog: A frame with :data:`REQUIRED_CATALOG_COLUMNS`, optionally
            :data:`OPTIONAL_CATALOG_COLUMNS` (extra columns are ignored; an empty frame without
            columns is an empty catalog).
        source: What the frame is (a path), for error messages.

    Returns:
        One :class:`FeatureSpec` per row.

    Raises:
        DataContractError: Naming the source, the missing columns, or each invalid row (its
            1-based row number, name and the rule it breaks) and duplicated names.
    """
    if catalog.columns.empty and catalog.empty:
        return ()
    missing = [column for column in REQUIRED_CATALOG_COLUMNS if column not in catalog.columns]
    if missing:
        raise DataContractError(f"{source}: catalog column(s) missing: {missing}")
    eligible = catalog.get("reason_eligible")
    singular = catalog.get("singular")
    specs: list[FeatureSpec] = []
    problems: list[str] = []
    rows = catalog[list(REQUIRED_CATALOG_COLUMNS)].itertuples(index=False)
    for row_number, row in enumerate(rows, 1):
        try:
            extra = (
                None if eligible is None else _eligible_cell(eligible.iloc[row_number - 1]),
                "" if singular is None else _cell(singular.iloc[row_number - 1]),
            )
            specs.append(FeatureSpec(*(_cell(value) for value in row), *extra))  # type: ignore[arg-type]
        except ValueError as exc:
            problems.append(f"row {row_number}: {exc}")
    duplicated = sorted(n for n, c in Counter(s.name for s in specs).items() if c > 1)
    if duplicated:
        problems.append(f"duplicated names {duplicated}")
    if problems:
        shown = "; ".join(problems[:10])
        raise DataContractError(f"{source}: {len(problems)} invalid catalog row(s): {shown}")
    return tuple(specs)


def select_feature_catalog(features: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """Return the catalog rows of the frame's feature columns, in frame order.

    Feature columns are all columns except ``customer_id``, ``cutoff`` and ``label``.

    Raises:
        ModelError: If a feature column has no catalog row, or the frame has no features.
    """
    names = [column for column in features.columns if column not in KEY_COLUMNS]
    if not names:
        raise ModelError("the features frame has no feature columns")
    missing = [name for name in names if name not in set(catalog["name"])]
    if missing:
        raise ModelError(
            f"{len(missing)} feature column(s) have no row in the feature catalog: {missing[:20]}"
        )
    return catalog.drop_duplicates("name").set_index("name").loc[names].reset_index()


def validate_catalog_frame(catalog: pd.DataFrame, source: str = "feature catalog") -> pd.DataFrame:
    """Return a validated copy of a catalog frame: :data:`CATALOG_COLUMNS` (see
    :func:`catalog_frame`).

    Raises:
        DataContractError: See :func:`catalog_specs`.
    """
    return catalog_frame(catalog_specs(catalog, source))


def read_catalog(path: str | Path) -> pd.DataFrame:
    """Read and validate a catalog CSV (as written by ``churn features`` or a saved model).

    Every cell is read as text (an empty unit stays ``""``, not NaN).

    Raises:
        DataContractError: If the file is missing or invalid (see :func:`catalog_specs`).
    """
    path = Path(path)
    if not path.exists():
        raise DataContractError(
            f"feature catalog not found at {path}; run 'churn features' (it writes the catalog)"
        )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return validate_catalog_frame(frame, str(path))
