"""Feature families and customer-journey phases: the one list, used by every module.

A *family* groups features (and, in the simulator, true churn drivers) by the part of the
customer journey they describe; a *phase* says whether the family is about the purchase
(``pre_sale``) or the life of the subscription (``post_sale``).

* :data:`FAMILIES` are the journey families of events mode, in report order. The simulator
  records one true log-odds term per family, so explanation checks compare against them.
* :data:`PROFILE_FAMILY` holds the entity-mode features (columns of one customer table).
* :data:`UNKNOWN` is the family and phase of a feature the catalog does not describe (a model
  saved without a catalog).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

Phase = Literal["pre_sale", "post_sale"]

FAMILIES: Final = ("acquisition", "billing", "usage", "support", "engagement")
"""Journey families of events mode (and of the simulator's ground truth), in report order."""

PROFILE_FAMILY: Final = "profile"
"""The family of entity-mode features."""

PHASES: Final = ("pre_sale", "post_sale")
"""Customer-journey phases, in journey order."""

UNKNOWN: Final = "unknown"
"""Family and phase of a feature without a catalog entry."""

FAMILY_PHASES: Final[Mapping[str, Phase]] = MappingProxyType(
    {
        "acquisition": "pre_sale",
        "billing": "post_sale",
        "usage": "post_sale",
        "support": "post_sale",
        "engagement": "post_sale",
        PROFILE_FAMILY: "post_sale",
    }
)
"""Family -> the phase its features belong to (every family lies in one phase)."""
