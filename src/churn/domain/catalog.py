"""The feature catalog: one entry per feature column, shared by explanations and reports.

Every family module declares a :class:`FeatureSpec` for each column it produces. Reason sentences
are built as ``f"{value} {unit?} {description}"``, so a description is a lowercase noun phrase
that reads after a number ("4 support tickets opened in the last 30 days").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd

Kind = Literal["numeric", "categorical"]
Phase = Literal["pre_sale", "post_sale"]

CATALOG_COLUMNS = ("name", "family", "phase", "kind", "unit", "description")
KEY_COLUMNS = ("customer_id", "cutoff", "label")
"""Columns of the features frame that are not features."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column.

    Attributes:
        name: Column name (snake_case; says what it measures).
        family: Feature family (``billing``, ``usage``, ``support``, ``acquisition``,
            ``engagement`` or ``profile``).
        phase: Customer-journey phase, ``pre_sale`` or ``post_sale``.
        kind: ``numeric`` (float64) or ``categorical`` (pandas ``str``).
        unit: Unit of measure, or empty.
        description: Lowercase noun phrase that reads after a number.
    """

    name: str
    family: str
    phase: Phase
    kind: Kind
    unit: str
    description: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name in KEY_COLUMNS:
            raise ValueError(f"invalid feature name {self.name!r}")
        if self.phase not in ("pre_sale", "post_sale"):
            raise ValueError(f"{self.name}: phase must be pre_sale or post_sale")
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"{self.name}: kind must be numeric or categorical")
        if not self.description or self.description[0].isupper():
            raise ValueError(f"{self.name}: description must be a lowercase noun phrase")


def slug(text: str) -> str:
    """Turn free text (an event type, a category, a column name) into a name fragment."""
    return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_") or "blank"


def catalog_frame(specs: Iterable[FeatureSpec]) -> pd.DataFrame:
    """Return the catalog as a frame with :data:`CATALOG_COLUMNS` (all pandas ``str``)."""
    rows = [asdict(spec) for spec in specs]
    frame = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
    return frame.astype("str")


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
