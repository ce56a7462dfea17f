"""The stem of a campaign code: the code without the period it was named after.

``spring_promo_2024`` -> ``spring_promo``, ``webinar-2024-03`` -> ``webinar``,
``Q3-2024 ABM`` -> ``ABM``, ``search_generic_2023q1`` -> ``search_generic``. The period tokens
are what ``features.campaign_period_pattern`` matches (see :mod:`churn.domain.campaigns`).

Rules, in DuckDB SQL so that the local engine and the Spark shards give the same values:

* A token is removed only where no digit stands just before it and no letter or digit just
  after it, case-insensitively; the characters around it stay. Two passes, because one
  replacement consumes the character between two adjacent tokens (``x_2023_2024``).
* Only when something was removed, runs of separators (``-``, ``_``, space) left behind collapse
  to their first character and separators at either end are stripped; a code without a period
  is returned unchanged, character for character.
* An empty stem (the code was only a period, ``Q3-2024``) is missing.
* A code made only of digits is an identifier (integer campaign ids from a CRM, ``2024`` among
  them), never a period: it is kept as it is.

The raw code itself is not a feature: its information beyond the stem is the period, which the
conversion date (``days_lead_to_conversion`` and tenure) already carries without memorising it.
"""

from __future__ import annotations

from churn.domain.campaigns import PERIOD_SEPARATORS
from churn.sql import quote_literal

_SEPARATOR = f"[{PERIOD_SEPARATORS}]"


def period_token_regex(pattern: str) -> str:
    """Return the RE2/Python regex of one token with its two neighbours as groups 1 and 2."""
    return f"(^|[^0-9])(?:{pattern})($|[^0-9a-z])"


def campaign_stem_sql(expression: str, pattern: str) -> str:
    """Return SQL of the stem of the text ``expression`` (see the module docstring).

    Args:
        expression: A VARCHAR SQL expression (the code as text; NULL stays NULL).
        pattern: One period token (``features.campaign_period_pattern``, validated at load).
    """
    token = quote_literal(period_token_regex(pattern))
    once = f"regexp_replace({expression}, {token}, '\\1\\2', 'gi')"
    removed = f"regexp_replace({once}, {token}, '\\1\\2', 'gi')"
    collapsed = f"regexp_replace({removed}, '({_SEPARATOR}){_SEPARATOR}+', '\\1', 'g')"
    stripped = f"regexp_replace({collapsed}, '^{_SEPARATOR}+|{_SEPARATOR}+$', '', 'g')"
    return (
        f"CASE WHEN regexp_full_match({expression}, '[0-9]+') THEN {expression} "
        f"WHEN {removed} = {expression} THEN {expression} "
        f"ELSE nullif({stripped}, '') END"
    )
