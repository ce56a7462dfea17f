"""How the pipeline's processes allocate: Arrow's allocator, numpy's pages, Arrow's cache.

Every stage reads and writes Parquet through pyarrow, whose default allocator in the wheels is
mimalloc. On the project's machine (a 2-core virtual machine whose guest hands free memory
back to the host) mimalloc's way of committing and purging pages cost more system time than
the work itself: ingest at 100k customers spent 14-24 s in the kernel against 9-11 s with the
C library's allocator, the same user time and outputs (2026-12-05; every stage's figures are
in docs/benchmarks-log.md, "Arrow allocates with the C library's allocator"). The price is
memory at scale: at a million customers ingest took 280 s instead of 340 s but peaked at 8.1 GB
instead of 6.8 GB (the C library keeps more freed memory in its arenas), still inside the
pipeline's 12 GiB budget. So each command (and each worker process) switches Arrow to the
system allocator before it allocates anything, unless the user chose one with Arrow's own
``ARROW_DEFAULT_MEMORY_POOL`` (e.g. ``mimalloc`` to save memory): that choice is kept.

numpy, for its part, asks the kernel for transparent huge pages (``madvise``) for every array
of 4 MiB or more. Where the kernel grants them only on such a request and then compacts
memory to find each 2 MiB page at the first touch (``transparent_hugepage`` ``enabled`` and
``defrag`` both ``madvise``, as on the project's machine), filling fresh arrays costs several
times the system time: 5.3 GB of new arrays (a million customers' training rows) took 14.5
and 4.6 s to first touch with the advice, 2.9 and 3.0 s without (2026-12-07,
docs/benchmarks-log.md). :func:`use_small_pages` turns the advice off in each process, unless
the user set numpy's own ``NUMPY_MADVISE_HUGEPAGE``. :func:`set_up_process_memory` does both
and is the first thing every command and worker process calls.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Arrow's own environment variable naming its default allocator (``system``, ``jemalloc``,
#: ``mimalloc``); when set, :func:`use_system_memory_pool` leaves Arrow's choice alone.
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def use_system_memory_pool() -> str:
    """Make the C library's allocator Arrow's default pool for this process.

    Call it once at the start of a command, before any Arrow buffer is allocated (buffers keep
    the pool they came from, so switching later is safe but only helps new allocations).

    Returns:
        The backend name of the default pool afterwards (``"system"``, or the one named in
        ``ARROW_DEFAULT_MEMORY_POOL``).
    """
    import pyarrow as pa

    if not os.environ.get(ARROW_POOL_VARIABLE):
        pa.set_memory_pool(pa.system_memory_pool())
    backend = get_arrow_pool_backend()
    logger.debug("Arrow allocates with %s", backend)
    return backend


#: numpy's own environment variable for its huge-page advice (``0`` off, ``1`` on); when set,
#: :func:`use_small_pages` leaves numpy's choice alone.
NUMPY_HUGEPAGE_VARIABLE = "NUMPY_MADVISE_HUGEPAGE"


def use_small_pages() -> bool | None:
    """Stop numpy advising transparent huge pages for its large arrays (see the module).

    Safe at any time: only arrays allocated afterwards are affected. numpy reads
    ``NUMPY_MADVISE_HUGEPAGE`` when it is imported; when the user set it, that choice stays.

    Returns:
        :func:`numpy_advises_huge_pages` afterwards.
    """
    switch = _find_huge_page_switch()
    if switch is not None and os.environ.get(NUMPY_HUGEPAGE_VARIABLE) is None:
        switch(False)
    advised = numpy_advises_huge_pages()
    logger.debug("numpy advises huge pages: %s", {True: "yes", False: "no"}.get(advised, "n/a"))
    return advised


def numpy_advises_huge_pages() -> bool | None:
    """Whether numpy advises huge pages for new large arrays in this process (``None``: this
    numpy has no such switch, and nothing here changes how it allocates)."""
    switch = _find_huge_page_switch()
    if switch is None:
        return None
    advised = bool(switch(False))  # the switch returns the setting it replaces
    switch(advised)
    return advised


def _find_huge_page_switch() -> Callable[[bool], bool] | None:
    """numpy's switch of the huge-page advice, which its own import sets from the variable."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        return None
    return _set_madvise_hugepage


def set_up_process_memory() -> None:
    """Set up a churn process's allocations: Arrow's system pool and numpy's small pages.

    Call it first in every command and worker process, before anything large is allocated.
    """
    use_system_memory_pool()
    use_small_pages()


def get_arrow_pool_backend() -> str:
    """Return the backend name of Arrow's default pool in this process (``"system"``, ...)."""
    import pyarrow as pa

    return pa.default_memory_pool().backend_name


def release_arrow_memory() -> None:
    """Hand the memory pyarrow has freed but still caches back to the operating system.

    Reading Parquet into pandas decodes the file into Arrow buffers and converts them into the
    frame's arrays; Arrow's allocator may keep the freed decoding buffers for its own reuse
    (mimalloc did: reading the 100k features file, an 886 MB frame, left 2.27 GB resident,
    1.10 GB after this call, 2026-12-03), where nothing else in the process can use them. With
    the system allocator this trims the C library's free memory.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
