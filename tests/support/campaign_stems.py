"""Naive reference of a campaign code's stem: a plain loop over the characters of the code."""

from __future__ import annotations

import re

SEPARATORS = "-_ "
DIGITS = "0123456789"


def naive_campaign_stem(code: object, pattern: str) -> str | None:
    """The code without its period tokens, written as a loop (no replacement regex).

    At each position where the previous character is not a digit, the token pattern is tried
    with a look-ahead refusing a following letter or digit (Python ``re``, not the RE2
    replacement the SQL uses); a match is skipped, anything else is kept. Left-over separator
    runs keep their first character, separators at the ends go, and an empty stem is missing.
    """
    if code is None:
        return None
    text = str(code)
    if text and all(ch in DIGITS for ch in text):
        return text  # an identifier, not a period
    token = re.compile(f"(?:{pattern})(?![0-9a-zA-Z])", re.IGNORECASE)
    kept: list[str] = []
    removed = False
    i = 0
    while i < len(text):
        match = None if i > 0 and text[i - 1] in DIGITS else token.match(text, i)
        if match is not None and match.end() > i:
            removed = True
            i = match.end()
        else:
            kept.append(text[i])
            i += 1
    if not removed:
        return text
    collapsed: list[str] = []
    for ch in kept:
        if ch in SEPARATORS and collapsed and collapsed[-1] in SEPARATORS:
            continue
        collapsed.append(ch)
    while collapsed and collapsed[0] in SEPARATORS:
        collapsed.pop(0)
    while collapsed and collapsed[-1] in SEPARATORS:
        collapsed.pop()
    return "".join(collapsed) or None
