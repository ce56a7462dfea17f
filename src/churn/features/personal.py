"""Personal data never becomes a feature, and its values are never stored verbatim.

A customer column is **personal** when its name or its values say so:

* **Name** (camelCase split, lower-cased, split into words): a word that only names personal
  data (``email``, ``surname``, ``firstname``, ``street``, ``address``, ``zip``, ``postcode``,
  ``ssn``, ``iban``, ``passport``, ``telephone``, ...; ``email`` also inside a word, as in
  ``contactemail``); a pair such as ``first/last/full/contact/customer/user/person name``,
  ``e mail``, ``phone/mobile number``, ``postal/zip code``, ``date of birth``; or the whole name
  ``name``, ``phone``, ``mobile``, ``mail``. ``plan_name``, ``phone_service`` or
  ``mobile_app_sessions`` are not personal by name: a word like ``phone`` alone describes a
  product as often as a person.
* **Values** (text columns): at least half of the non-missing values hold e-mail addresses or
  are phone numbers, or look like person names (two or more capitalised words) in a column with
  many distinct values (at least 50, or most of its values).

A personal column is refused as a feature with an error naming it, unless it is listed in
``features.allow_personal_columns``; an allowed text column is then **pseudonymised** (each value
replaced by ``pii_`` and 10 hex digits of its MD5), so the model can still learn from repeated
values while the artifact, the catalog, MLflow, reasons and the report never hold the value.
In every other customer text column, single values that hold an e-mail address or are a phone
number are pseudonymised the same way (:func:`pseudonymize_sql`), so a stray address in a
free-text category never becomes a stored category level.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import pandas as pd

from churn.errors import DataContractError

PSEUDONYM_PREFIX = "pii_"
"""Start of a pseudonymised value: ``pii_`` + the first 10 hex digits of its MD5."""

EMAIL_PATTERN = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
PHONE_PATTERN = r"\+?\(?[0-9][0-9 ().\-/]{5,22}[0-9]"
"""A phone number: digits with separators; see :func:`looks_like_phone` for the other tests."""
DATE_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}.*"
PERSON_NAME_PATTERN = r"[A-Z][a-z'\-]+( [A-Z]\.?)?( [A-Z][a-z'\-]+)+"

MIN_DIGITS_IN_PHONE = 7
VALUE_SHARE = 0.5
"""A column is personal when at least this share of its non-missing values look personal."""
MIN_DISTINCT_SHARE_FOR_NAMES = 0.5
MIN_DISTINCT_NAMES = 50
"""Person names are many distinct values: a few capitalised levels are a category."""
MAX_VALUES_CHECKED = 20_000
"""Value heuristics look at about this many evenly spaced values of a column."""

_PERSONAL_WORDS = frozenset(
    {
        "email",
        "emails",
        "surname",
        "firstname",
        "lastname",
        "fullname",
        "forename",
        "givenname",
        "username",
        "street",
        "address",
        "zip",
        "zipcode",
        "postcode",
        "postalcode",
        "ssn",
        "iban",
        "passport",
        "dob",
        "birthdate",
        "birthday",
        "telephone",
        "fax",
    }
)
_PERSONAL_PAIRS = frozenset(
    {
        *((who, "name") for who in ("first", "last", "full", "given", "family", "middle")),
        *((who, "name") for who in ("contact", "customer", "user", "person", "maiden")),
        ("e", "mail"),
        *(
            (kind, number)
            for kind in ("phone", "mobile", "cell", "tel")
            for number in ("number", "no", "nr", "num")
        ),
        ("postal", "code"),
        ("post", "code"),
        ("zip", "code"),
        ("birth", "date"),
        ("of", "birth"),
        ("birth", "year"),
        ("social", "security"),
    }
)
_PERSONAL_WHOLE_NAMES = frozenset({"name", "phone", "mobile", "mail", "cell"})

_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_DATE = re.compile(DATE_PATTERN)
_PERSON = re.compile(PERSON_NAME_PATTERN)


def split_words(column: str) -> list[str]:
    """Return the lower-case words of a column name (``ContactEMail`` -> contact, e, mail)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", str(column))
    return [w for w in re.split(r"[^0-9a-z]+", spaced.lower()) if w]


def personal_name_reason(column: str) -> str | None:
    """Return why the column's name says it holds personal data, or ``None``."""
    words = split_words(column)
    if "_".join(words) in _PERSONAL_WHOLE_NAMES:
        return f"its name {column!r} names personal data"
    for word in words:
        if word in _PERSONAL_WORDS or "email" in word:
            return f"its name contains {word!r}"
    for pair in itertools.pairwise(words):
        if pair in _PERSONAL_PAIRS:
            return f"its name contains {' '.join(pair)!r}"
    return None


def looks_like_email(value: str) -> bool:
    """Whether a text value holds an e-mail address (alone or inside free text)."""
    return bool(_EMAIL.search(value))


def looks_like_phone(value: str) -> bool:
    """Whether a text value is a phone number.

    It must be digits with separators (at least :data:`MIN_DIGITS_IN_PHONE` digits), start with
    ``+`` or hold a separator (so plain numeric codes are not phones), and not be a date.
    """
    text = value.strip()
    if not _PHONE.fullmatch(text) or _DATE.fullmatch(text):
        return False
    digits = sum(ch.isdigit() for ch in text)
    return digits >= MIN_DIGITS_IN_PHONE and (
        text.startswith("+") or any(ch in text for ch in " ().-/")
    )


def looks_personal(value: str) -> bool:
    """Whether one value holds an e-mail address or is a phone number (always pseudonymised)."""
    return looks_like_email(value) or looks_like_phone(value)


def personal_value_reason(values: pd.Series) -> str | None:
    """Return why a text column's values look like personal data, or ``None``."""
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return None
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return None
    text = values.dropna().astype(str)
    text = text[text.str.strip() != ""]
    if text.empty:
        return None
    # An evenly spaced sample decides for large tables: the same answer, a bounded cost.
    text = text.iloc[:: max(1, len(text) // MAX_VALUES_CHECKED)]
    checks = (
        ("e-mail addresses", text.map(looks_like_email)),
        ("phone numbers", text.map(looks_like_phone)),
    )
    for what, matched in checks:
        if matched.mean() >= VALUE_SHARE:
            return f"{matched.mean():.0%} of its values are {what}"
    distinct = text.nunique()
    if distinct >= MIN_DISTINCT_NAMES or distinct >= MIN_DISTINCT_SHARE_FOR_NAMES * len(text):
        names = text.map(lambda v: bool(_PERSON.fullmatch(v.strip())))
        if names.mean() >= VALUE_SHARE:
            return f"{names.mean():.0%} of its values look like person names ({distinct} distinct)"
    return None


def find_personal_columns(frame: pd.DataFrame, columns: Iterable[str]) -> dict[str, str]:
    """Return column -> why it looks like personal data, for the personal ones of ``columns``."""
    found = {}
    for column in columns:
        reason = personal_name_reason(column) or personal_value_reason(frame[column])
        if reason is not None:
            found[column] = reason
    return found


def refuse_personal_columns(
    frame: pd.DataFrame, columns: Iterable[str], allowed: Iterable[str], table: str
) -> list[str]:
    """Fail on personal columns that are not allowed; return the allowed personal ones.

    Args:
        frame: The table.
        columns: The columns that would become features.
        allowed: ``features.allow_personal_columns``.
        table: Table name, for the message.

    Raises:
        DataContractError: Naming every refused column and why it looks personal.
    """
    allowed = set(allowed)
    personal = find_personal_columns(frame, columns)
    refused = {c: why for c, why in personal.items() if c not in allowed}
    if refused:
        listed = "\n  - ".join(f"{table}.{c}: {why}" for c, why in refused.items())
        raise DataContractError(
            "personal data cannot become a feature:\n  - "
            f"{listed}\nDrop these columns from the export, map them away in "
            "ingest.tables, or, if one is not personal data or is needed, list it in "
            "features.allow_personal_columns (text values are then pseudonymised)"
        )
    return [c for c in personal if c in allowed]


def pseudonym_sql(expression: str) -> str:
    """SQL replacing a text value by its pseudonym (``pii_`` + 10 hex digits of its MD5)."""
    return f"('{PSEUDONYM_PREFIX}' || left(md5({expression}), 10))"


def pseudonymize_sql(expression: str) -> str:
    """SQL keeping a text value unless it holds an e-mail address or is a phone number.

    Mirrors :func:`looks_personal` in DuckDB, so that the Spark shards (which run the same
    DuckDB SQL) give the same values.
    """
    digits = f"length(regexp_replace({expression}, '[^0-9]', '', 'g'))"
    phone = (
        f"(regexp_full_match(trim({expression}), '{PHONE_PATTERN}') "
        f"AND NOT regexp_full_match(trim({expression}), '{DATE_PATTERN}') "
        f"AND {digits} >= {MIN_DIGITS_IN_PHONE} "
        f"AND (starts_with(trim({expression}), '+') "
        f"OR regexp_matches(trim({expression}), '[ ().\\-/]')))"
    )
    email_pattern = EMAIL_PATTERN.replace("'", "''")  # SQL string literal
    email = f"regexp_matches({expression}, '{email_pattern}')"
    return f"CASE WHEN {email} OR {phone} THEN {pseudonym_sql(expression)} ELSE {expression} END"


def text_feature_sql(expression: str, pseudonymize_all: bool) -> str:
    """SQL of a text feature from a customer column: all values or only personal ones hidden."""
    return pseudonym_sql(expression) if pseudonymize_all else pseudonymize_sql(expression)
