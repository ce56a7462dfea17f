"""Profile family (entity mode): every customer attribute becomes a feature as it is.

Numbers and booleans become float64 features, text and categories ``str`` features, and
timestamps the fractional days from the value to the cutoff (``days_since_<column>``), except
columns declared ``age`` in ``features.customer_attributes`` (a date of birth): those become the
whole years to the cutoff (``<column>_age_years``), as in events mode. Names are
the column names in snake_case; descriptions are the column names with underscores as spaces.
The label column must already be removed (the features runner drops it).

Personal data never gets here as it is: :func:`churn.features.build.build_features` refuses
personal columns first (:mod:`churn.features.personal`). Text values that look like an e-mail
address or a phone number are pseudonymised, and so is every value of a column listed in
``features.allow_personal_columns``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from churn.config import FeaturesConfig
from churn.domain.catalog import KEY_COLUMNS, FeatureSpec, slug
from churn.domain.families import FAMILY_PHASES
from churn.errors import DataContractError
from churn.features.common import (
    KEY_SELECT_LIST,
    KEYS,
    FamilyQuery,
    age_years_sql,
    days_before_cutoff,
    select_features,
    spec_maker,
)
from churn.features.personal import text_feature_sql
from churn.sql import quote_ident

FAMILY = "profile"
PHASE = FAMILY_PHASES[FAMILY]
REQUIRED_TABLES = ("customers",)
ANY_OF_TABLES: tuple[str, ...] = ()

_spec = spec_maker(FAMILY, PHASE)


def family_query(cfg: FeaturesConfig, tables: Mapping[str, pd.DataFrame]) -> FamilyQuery:
    """Return the profile SQL and auto-generated catalog entries for the customer columns."""
    customers = tables["customers"]
    specs: list[FeatureSpec] = []
    expressions: dict[str, str] = {}
    for column in customers.columns:
        if column == "customer_id":
            continue
        dtype = customers[column].dtype
        source = f"c.{quote_ident(column)}"
        words = str(column).replace("_", " ").strip().lower()
        if cfg.customer_attributes.get(column) == "age":
            # A declared age column (a date of birth) is only ever used as whole years.
            if not pd.api.types.is_datetime64_any_dtype(dtype):
                raise DataContractError(
                    f"features.customer_attributes: customers.{column} is declared 'age' but "
                    "does not hold dates (run churn ingest with the same params)"
                )
            name, kind, unit = f"{slug(column)}_age_years", "numeric", "years"
            words = f"age in years at the cutoff from {words}"
            expression = age_years_sql(source, "k.cutoff")
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            name, kind, unit = f"days_since_{slug(column)}", "numeric", "days"
            words = f"days since {words}"
            expression = days_before_cutoff(source)
        elif pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            name, kind, unit = slug(column), "numeric", ""
            expression = f"{source}::DOUBLE"
        else:
            name, kind, unit = slug(column), "categorical", ""
            expression = text_feature_sql(
                f"{source}::VARCHAR", column in cfg.allow_personal_columns
            )
        if name in KEY_COLUMNS:
            raise DataContractError(
                f"entity mode: customer column {column!r} clashes with the key column {name!r} "
                "of the features table; rename it with ingest.tables.customers.columns"
            )
        specs.append(_spec(name, kind, unit, words))
        expressions[name] = expression
    if not specs:
        return FamilyQuery(sql="", specs=())
    sql = f"""
        SELECT {KEY_SELECT_LIST},
               {select_features(specs, expressions)}
        FROM {KEYS} AS k
        LEFT JOIN customers AS c USING (customer_id)"""
    return FamilyQuery(sql=sql, specs=tuple(specs))
