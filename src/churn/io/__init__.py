"""All disk I/O of the pipeline: atomic writes and table reads.

Stage cores never touch the disk; runners call these helpers. The package's modules, from the
bottom up:

* :mod:`churn.io.atomic`: outputs appear whole or not at all (:func:`atomic_path` for a file,
  :func:`atomic_directory` for a set of files swapped in together), and staging paths left by
  a killed run are removed;
* :mod:`churn.io.memory`: how every process allocates (Arrow's allocator, the C library's;
  numpy's pages, without the huge-page advice) and handing Arrow's cache back;
* :mod:`churn.io.writes`: frames, JSON and text, each written atomically;
* :mod:`churn.io.row_groups`: the Parquet primitives (row groups decoded straight into their
  final arrays, the positions a pyarrow filter keeps);
* :mod:`churn.io.reads`: whole tables (Parquet without a second copy, CSV as text);
* :mod:`churn.io.partial`: only some rows of a file (by position, column values, whole keys,
  or the latest cutoff);
* :mod:`churn.io.fingerprint`: a cheap fingerprint of Parquet files (names, sizes, footers),
  checked before a run reuses what an earlier one computed from them.

Everything public is importable from ``churn.io`` itself, which is how the pipeline imports it.
"""

from __future__ import annotations

from churn.io.atomic import (
    RETIRED_MARK,
    STAGING_MARK,
    atomic_directory,
    atomic_path,
    remove_stale_staging,
)
from churn.io.fingerprint import fingerprint_parquet_files
from churn.io.memory import (
    get_arrow_pool_backend,
    numpy_advises_huge_pages,
    release_arrow_memory,
    set_up_process_memory,
    use_small_pages,
    use_system_memory_pool,
)
from churn.io.partial import (
    read_frame_keys,
    read_frame_positions,
    read_frame_rows,
    read_latest_rows,
)
from churn.io.reads import find_table_file, read_frame, read_parquet_frame, read_tables
from churn.io.row_groups import (
    find_filtered_positions,
    read_parquet_row_groups,
    read_time_statistics,
)
from churn.io.writes import (
    decode_frame,
    encode_frame,
    frame_to_arrow,
    write_json,
    write_parquet,
    write_table,
    write_text,
)

__all__ = [
    "RETIRED_MARK",
    "STAGING_MARK",
    "atomic_directory",
    "atomic_path",
    "decode_frame",
    "encode_frame",
    "find_filtered_positions",
    "find_table_file",
    "fingerprint_parquet_files",
    "frame_to_arrow",
    "get_arrow_pool_backend",
    "numpy_advises_huge_pages",
    "read_frame",
    "read_frame_keys",
    "read_frame_positions",
    "read_frame_rows",
    "read_latest_rows",
    "read_parquet_frame",
    "read_parquet_row_groups",
    "read_tables",
    "read_time_statistics",
    "release_arrow_memory",
    "remove_stale_staging",
    "set_up_process_memory",
    "use_small_pages",
    "use_system_memory_pool",
    "write_json",
    "write_parquet",
    "write_table",
    "write_text",
]
