"""The stem of a campaign code: the code without the period it was named after.

``spring_promo_2024`` -> ``spring_promo``, ``webinar-2024-03`` -> ``webinar``,
``Q3-2024 ABM`` -> ``ABM``, ``search_generic_2023q1`` -> ``search_generic``. The period tokens
are what ``features.campaign_period_pattern`` matches (see :mod:`churn.domain.campaigns`).

Rules:

* A token is removed only where no digit stands just before it and no letter or digit just
  after it (a look-behind and a look-ahead around the pattern), case-insensitively, scanning
  left to right like ``re.sub``; ``spring2024`` loses its year, ``release_12024`` keeps it.
* Only when something was removed, runs of separators (``-``, ``_``, space) left behind collapse
  to their first character and separators at either end are stripped; a code without a period
  is returned unchanged, character for character.
* An empty stem (the code was only a period, ``Q3-2024``) is missing.
* A code made only of digits is an identifier (integer campaign ids from a CRM, ``2024`` among
  them), never a period: it is kept as it is.

The stems are computed in Python over the *distinct* codes (a few hundred in a CRM) and reach
DuckDB as a small literal table joined on the code, so the local engine and the Spark shards
(which run the same SQL on their share of the customers) give the same values, and the
pattern needs Python's regex features (look-arounds), which RE2 lacks.

The raw code itself is not a feature: beyond the stem it only holds the period, which the
conversion date (``days_lead_to_conversion``, tenure) already carries without memorising it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from churn.domain.campaigns import PERIOD_SEPARATORS
from churn.sql import quote_literal

_SEPARATOR_RUN = re.compile(f"([{PERIOD_SEPARATORS}])[{PERIOD_SEPARATORS}]+")
_DIGITS_ONLY = re.compile("[0-9]+")


def compile_period_token(pattern: str) -> re.Pattern[str]:
    """Return the token regex: ``pattern`` with no digit before and no letter or digit after."""
    return re.compile(f"(?<![0-9])(?:{pattern})(?![0-9a-zA-Z])", re.IGNORECASE)


def campaign_stem(code: str, token: re.Pattern[str]) -> str | None:
    """Return the stem of one code (see the module docstring); ``None`` when nothing is left."""
    if _DIGITS_ONLY.fullmatch(code):
        return code
    removed = token.sub("", code)
    if removed == code:
        return code
    stem = _SEPARATOR_RUN.sub(r"\1", removed).strip(PERIOD_SEPARATORS)
    return stem or None


def campaign_stems(codes: Iterable[object], pattern: str) -> dict[str, str | None]:
    """Return the stem of every distinct non-missing code, read as text (``2024`` -> ``"2024"``)."""
    token = compile_period_token(pattern)
    distinct = {str(code) for code in codes if code is not None and code == code}
    return {code: campaign_stem(code, token) for code in sorted(distinct)}


def campaign_stems_sql(stems: dict[str, str | None]) -> str:
    """Return a SELECT of the literal table ``(code, stem)`` of ``stems`` (no rows when empty)."""
    if not stems:
        return "SELECT NULL::VARCHAR AS code, NULL::VARCHAR AS stem WHERE false"
    rows = ", ".join(
        f"({quote_literal(code)}, {'NULL' if stem is None else quote_literal(stem)})"
        for code, stem in stems.items()
    )
    return (
        f"SELECT code::VARCHAR AS code, stem::VARCHAR AS stem FROM (VALUES {rows}) AS v(code, stem)"
    )
