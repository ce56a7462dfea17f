"""Campaign codes that carry their period: the default period pattern and its validation.

CRM exports name campaigns after the quarter, half, month or year they ran in
(``search_generic_2023q1``, ``spring_promo_2024``, ``webinar-2024-03``, ``Q3-2024 ABM``). Such a
code is a non-stationary label: every new period brings codes the model never saw in training,
so the monitor reads them as drift and the model as unseen levels. The acquisition family
therefore keeps only the code's **stem**, the code with its period tokens removed
(``churn.features.campaign`` applies the pattern).

``features.campaign_period_pattern`` is a Python regular expression for **one period token**.
It is matched case-insensitively, and only where no digit stands just before the token and no
letter or digit just after it. It must not match the empty string, and must have no capturing
groups (write ``(?:...)``), so that it stays a plain token pattern.
"""

from __future__ import annotations

import re

_MONTHS = (
    "january|february|march|april|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|may|jun|jul|aug|sept|sep|oct|nov|dec"
)
_YEAR = "(?:19|20)[0-9]{2}"
_DAY = "(?:0[1-9]|[12][0-9]|3[01])"
_NUMERIC_MONTH = "(?:0[1-9]|1[0-2])"
# Before the year: a quarter, half, fiscal-year mark or month name, glued or separated
# (q3-2024, H1 2024, mar2024, FY2024), or a month number followed by a separator (03-2024).
_BEFORE_YEAR = f"(?:(?:q[1-4]|h[12]|fy|{_MONTHS})[-_ ]?|{_NUMERIC_MONTH}[-_ ])?"
# After the year: a quarter, half, month name, or a month number with an optional day
# (2024q1, 2024-H2, 2024_march, 2024-03, 2024-03-15).
_AFTER_YEAR = f"(?:[-_ ]?(?:q[1-4]|h[12]|{_MONTHS}|{_NUMERIC_MONTH}(?:[-_ ]?{_DAY})?))?"

DEFAULT_CAMPAIGN_PERIOD_PATTERN = _BEFORE_YEAR + _YEAR + _AFTER_YEAR
"""A year 19xx/20xx with an optional quarter, half, month (name or number) or date around it."""

PERIOD_SEPARATORS = "-_ "
"""Characters that separate a period token from the rest of a code; left-overs are stripped."""


def check_period_pattern(pattern: str) -> str:
    """Return ``pattern`` if it can serve as ``features.campaign_period_pattern``.

    Raises:
        ValueError: If it does not compile, has a capturing group, or matches the empty
            string (it would then remove nothing and hide a typo).
    """
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"campaign_period_pattern does not compile: {exc}") from exc
    if compiled.groups:
        raise ValueError(
            "campaign_period_pattern must not have capturing groups; write (?:...) instead"
        )
    if compiled.fullmatch(""):
        raise ValueError("campaign_period_pattern matches the empty string")
    return pattern
