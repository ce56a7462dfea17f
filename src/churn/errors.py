"""Exceptions for problems a user can fix (bad input, bad configuration).

The CLI prints their message and exits with code 2 instead of a traceback.
"""

from __future__ import annotations


class ChurnError(RuntimeError):
    """Base class for user-fixable pipeline errors."""


class DataContractError(ChurnError):
    """Input does not satisfy the data contract (missing table or column, too many bad rows)."""


class EmptyPopulationError(ChurnError):
    """No customer is in the population at the requested cutoff."""


class ModelError(ChurnError):
    """A model cannot be trained, loaded or used (corrupt file, too few positives, leakage)."""


class ResourceLimitError(ChurnError):
    """A configured resource limit (e.g. DuckDB's memory) is too small for the data."""
