"""Small helpers to log tabular summaries with rich (used by stage runners)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table


def render_table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Render rows as a rich box table and return it as plain text.

    Args:
        title: Table title.
        header: Column headers; columns after the first are right-aligned (numbers).
        rows: Cell values; each is shown with ``str``.

    Returns:
        The table as text, ready for a log record.
    """
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    buffer = io.StringIO()
    Console(file=buffer, width=120, color_system=None).print(table)
    return buffer.getvalue().rstrip()


def log_table(
    logger: logging.Logger,
    title: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
) -> None:
    """Log a rendered table at INFO level (one record, so it stays together)."""
    if logger.isEnabledFor(logging.INFO):
        logger.info("%s", "\n" + render_table(title, header, rows))
