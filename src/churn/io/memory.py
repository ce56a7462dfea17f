"""Which allocator Arrow uses in the pipeline's processes, and handing its cache back.

Every stage reads and writes Parquet through pyarrow, whose default allocator in the wheels is
mimalloc. On the project's machine (a 2-core virtual machine whose guest hands free memory
back to the host) mimalloc's way of committing and purging pages cost more system time than
the work itself: ingest at 100k customers spent 14-24 s in the kernel against 9-11 s with the
C library's allocator, the same user time and outputs (2026-12-05; every stage's figures are
in docs/benchmarks-log.md, "Arrow allocates with the C library's allocator"). The price is
memory at scale: at a million customers ingest took 280 s instead of 340 s but peaked at 8.1 GB
instead of 6.8 GB (the C library keeps more freed memory in its arenas), still inside the
pipeline's 12 GiB budget. So each command (and each fit worker) switches Arrow to the system
allocator before it allocates anything, unless the user chose one with Arrow's own
``ARROW_DEFAULT_MEMORY_POOL`` (e.g. ``mimalloc`` to save memory): that choice is kept.
"""

from __future__ import annotations

import logging
import os

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
