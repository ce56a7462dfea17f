"""Large tables validated in worker processes beside the main one (``ingest.workers``, issue #14).

At a million customers the usage events are nine tenths of the rows, and while they are
validated the second core is only partly busy (the reader and writer threads). With
``ingest.workers: 1`` the largest table read in batches is validated in a spawned process,
started as soon as the tables it references are validated (the customers), while the main
process validates every other table. The worker runs the same
:func:`~churn.stages.ingest.batches.validate_table_in_batches` on the same raw file and writes
the same two files into the same staging folders, so the outputs do not depend on where a
table was validated.

What crosses the process boundary is plain data, never a pickle of ours: the task as JSON text
(the raw file, its row count, the ``ingest`` section, the staging folders), the parent keys as
Arrow IPC files in a scratch folder (:func:`churn.io.encode_frame`), and back the report entry
as JSON and the customers the valid rows name as Arrow IPC. An error in the worker comes back
as its type, message and traceback; a :class:`~churn.errors.ChurnError` (a data contract
error, say) is raised again here with its class and message, anything else as a
``RuntimeError`` with the traceback.
Leaving :class:`TableWorkers` stops any worker still running before the staging folders are
discarded (an error in another table), so no half-written file stays behind.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import tempfile
import traceback
from collections.abc import Mapping
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from churn import errors, io
from churn.config import IngestConfig
from churn.stages.ingest.batches import validate_table_in_batches
from churn.stages.ingest.files import open_batched_table, open_table_sinks
from churn.stages.ingest.tables import table_specs

logger = logging.getLogger(__name__)

_RESULT_FILE = "result.json"
_REFERENCED_FILE = "referenced.arrow"


class _WorkerJob:
    """One table in one worker process (:class:`~churn.stages.ingest.core.TableJob`)."""

    def __init__(self, name: str, process: BaseProcess, folder: Path) -> None:
        self.name, self.process, self.folder = name, process, folder

    def result(self) -> tuple[dict[str, Any], pd.Index | None]:
        """Wait for the worker; its report entry and referenced customers, or its error."""
        self.process.join()
        path = self.folder / _RESULT_FILE
        if not path.is_file():
            raise RuntimeError(
                f"the ingest worker for table '{self.name}' stopped without a result "
                f"(exit code {self.process.exitcode})"
            )
        outcome = json.loads(path.read_text())
        if "error" in outcome:
            if outcome["user_error"]:  # a ChurnError: the same class, the same message
                kind = getattr(errors, outcome["error"], None)
                if not (isinstance(kind, type) and issubclass(kind, errors.ChurnError)):
                    kind = errors.ChurnError
                raise kind(outcome["message"])
            raise RuntimeError(
                f"the ingest worker for table '{self.name}' failed with {outcome['error']}: "
                f"{outcome['message']}\n{outcome['traceback']}"
            )
        referenced = None
        if outcome["referenced"]:
            ids = io.decode_frame((self.folder / _REFERENCED_FILE).read_bytes())["ids"]
            referenced = pd.Index(ids).rename(outcome["referenced_name"])
        return outcome["report"], referenced


class TableWorkers:
    """Starts the worker processes of one ingest run; a context manager.

    Args:
        cfg: The ``ingest`` section.
        sources: Table -> its raw file.
        rows: Table -> its rows, as counted when it was opened for batches.
        valid_dir: The staging folder of the valid tables.
        quarantine_dir: The staging folder of the quarantined rows.
        customer_attributes: ``features.customer_attributes``.
    """

    def __init__(
        self,
        cfg: IngestConfig,
        sources: Mapping[str, Path],
        rows: Mapping[str, int],
        valid_dir: Path,
        quarantine_dir: Path,
        customer_attributes: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg, self.sources, self.rows = cfg, dict(sources), dict(rows)
        self.valid_dir, self.quarantine_dir = Path(valid_dir), Path(quarantine_dir)
        self.customer_attributes = (
            None if customer_attributes is None else dict(customer_attributes)
        )
        self.jobs: list[_WorkerJob] = []
        self.scratch: Path | None = None

    def __enter__(self) -> TableWorkers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for job in self.jobs:
            if job.process.is_alive():  # an error elsewhere: its outputs are discarded anyway
                logger.info("stopping the ingest worker of table %s", job.name)
                job.process.terminate()
            job.process.join()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def start(
        self, name: str, future_from: pd.Timestamp, parent_keys: Mapping[str, pd.Series]
    ) -> _WorkerJob:
        """Start validating table ``name`` in a new process (a
        :data:`~churn.stages.ingest.core.StartTable`)."""
        if self.scratch is None:
            self.scratch = Path(tempfile.mkdtemp(prefix="churn-ingest-"))
        folder = self.scratch / name
        folder.mkdir()
        parents = {}
        for parent, keys in parent_keys.items():  # each a named key column
            parents[parent] = str(folder / f"{parent}.arrow")
            Path(parents[parent]).write_bytes(
                io.encode_frame(keys.reset_index(drop=True).to_frame())
            )
        task = {
            "table": name,
            "path": str(self.sources[name]),
            "rows": self.rows[name],
            "config": self.cfg.model_dump(mode="json"),
            "customer_attributes": self.customer_attributes,
            "future_from": future_from.isoformat(),
            "parents": parents,
            "valid_dir": str(self.valid_dir),
            "quarantine_dir": str(self.quarantine_dir),
            "folder": str(folder),
            "log_level": logging.getLogger().getEffectiveLevel(),
        }
        # Spawned, not forked: no copy of this process's frames, threads or DuckDB state.
        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=validate_table_in_worker,
            args=(json.dumps(task),),
            name=f"churn-ingest-{name}",
            daemon=True,  # stopped with this process
        )
        process.start()
        logger.info("table %s: validated in worker process %s", name, process.pid)
        job = _WorkerJob(name, process, folder)
        self.jobs.append(job)
        return job


def validate_table_in_worker(task_text: str) -> None:
    """The worker process: validate one table as the task says; write the result file.

    Args:
        task_text: The task as JSON (see :meth:`TableWorkers.start`).
    """
    task = json.loads(task_text)
    folder = Path(task["folder"])
    logging.basicConfig(
        level=task["log_level"], format=f"%(levelname)-8s [ingest {task['table']}] %(message)s"
    )
    try:
        io.set_up_process_memory()  # as every churn command (churn.io.memory)
        name = task["table"]
        cfg = IngestConfig.model_validate(task["config"])
        table = open_batched_table(Path(task["path"]), cfg.batch_rows, task["rows"])
        parents = {
            p: io.decode_frame(Path(f).read_bytes()).iloc[:, 0] for p, f in task["parents"].items()
        }
        with open_table_sinks(Path(task["valid_dir"]), Path(task["quarantine_dir"]), name) as sinks:
            _, report, referenced = validate_table_in_batches(
                name,
                table_specs(cfg.mode)[name],
                table,
                cfg,
                pd.Timestamp(task["future_from"]),
                parents,
                sinks,
                task["customer_attributes"],
            )
        outcome: dict[str, Any] = {"report": report, "referenced": referenced is not None}
        if referenced is not None:
            ids = pd.DataFrame({"ids": referenced.to_series().reset_index(drop=True)})
            (folder / _REFERENCED_FILE).write_bytes(io.encode_frame(ids))
            outcome["referenced_name"] = referenced.name
    except Exception as exc:  # every error goes back to the main process
        outcome = {
            "error": type(exc).__name__,
            "user_error": isinstance(exc, errors.ChurnError),
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
    io.write_json(outcome, folder / _RESULT_FILE)
