"""Attach plot files to the MLflow run of the model version they describe.

Importing MLflow and opening its SQL store take about 2.7 s (2026-12-06), more than a third of
the explain stage at any size, while that stage runs on one core. :func:`plot_logger` therefore
does the importing in a helper process started before the plots are drawn: the stage draws on
its core while the helper imports on the other, and the plots go to MLflow as soon as they
exist.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from churn.tracking.store import (
    connection_uri,
    import_mlflow,
    quiet_mlflow,
    store_is_missing,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)


MLFLOW_ARTIFACT_DIR = "explain"

#: Seconds between checks that the helper process is still alive while waiting for its answer.
_POLL_SECONDS = 0.5

#: Seconds the helper gets to exit once the stage is done with it, before it is terminated.
_EXIT_SECONDS = 10.0


@dataclass(frozen=True)
class LoggingTarget:
    """Where plots go: the training run of ``model_dir/registry.json`` in the store at ``uri``."""

    uri: str
    run_id: str


def find_logging_target(model_dir: Path) -> LoggingTarget | None:
    """The run to attach plots to, from ``model_dir/registry.json`` (key ``run_id``).

    Returns ``None``, quietly, without that file or key, and with a warning when the file is
    not a JSON object or the configured SQLite store does not exist (connecting would create
    an empty one).
    """
    from churn.layout import REGISTRY_FILE

    registry = model_dir / REGISTRY_FILE
    if not registry.exists():
        return None
    try:
        run_id = json.loads(registry.read_text()).get("run_id")
    except (json.JSONDecodeError, AttributeError):
        logger.warning("%s is not a JSON object: plots not logged to MLflow", registry)
        return None
    if not run_id:
        return None
    uri = tracking_uri()
    if store_is_missing(uri):
        logger.warning("no MLflow store at %s: plots not logged to run %s", uri, run_id)
        return None
    return LoggingTarget(uri, str(run_id))


@contextlib.contextmanager
def plot_logger(model_dir: Path) -> Iterator[Callable[[Sequence[Path]], str | None]]:
    """A function that attaches PNGs to the training run named in ``model_dir/registry.json``
    (:func:`find_logging_target`), with MLflow imported in a helper process started on
    entering the block.

    Call the function once, inside the block, with the finished files; it waits for the helper
    and returns the run id logged to, or ``None``. An MLflow failure or the helper's death is a
    warning, not raised, since the files on disk are the stage's output. Without a run to log
    to, no helper is started and the function returns ``None``. Leaving the block stops the
    helper; files not yet handed over are not logged.

    The helper is spawned (it shares no state with the stage) and inherits the environment,
    the tracking URI included. The paths and the answer travel as JSON text, never pickled.
    """
    target = find_logging_target(model_dir)
    if target is None:
        yield lambda paths: None
        return
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    helper = context.Process(
        target=serve_plot_logging, args=(theirs, target.uri, target.run_id), daemon=True
    )
    helper.start()
    theirs.close()

    def log(paths: Sequence[Path]) -> str | None:
        try:
            ours.send_bytes(json.dumps([str(path) for path in paths]).encode())
            while not ours.poll(_POLL_SECONDS):
                if not helper.is_alive():
                    raise EOFError(f"exit code {helper.exitcode}")
            answer = json.loads(ours.recv_bytes().decode())
        except (EOFError, OSError) as exc:
            logger.warning(
                "plots not logged to MLflow run %s: the helper process stopped (%s)",
                target.run_id,
                exc,
            )
            return None
        if answer.get("problem"):
            logger.warning("%s", answer["problem"])
        return answer.get("run_id")

    try:
        yield log
    finally:
        ours.close()  # the helper reads the end of the pipe and exits
        helper.join(_EXIT_SECONDS)
        if helper.is_alive():
            helper.terminate()
            helper.join()


def serve_plot_logging(connection: Connection, uri: str, run_id: str) -> None:
    """Helper process of :func:`plot_logger`: connect to the store, then log the paths sent.

    Answers ``{"run_id": ..., "problem": ...}`` as JSON, then ends the process at once; exits
    quietly when the stage closes the pipe without sending anything.
    """
    target = LoggingTarget(uri, run_id)
    client, problem = _connect(target)  # the slow part, done while the plots are drawn
    try:
        paths = json.loads(connection.recv_bytes().decode())
    except EOFError:
        return
    logged = None
    if client is not None:
        logged, problem = _log_plots(client, target, paths)
    connection.send_bytes(json.dumps({"run_id": logged, "problem": problem}).encode())
    connection.close()
    # Nothing is left to write (the artifacts are copied, the answer sent), and the
    # interpreter's teardown of MLflow and SQLAlchemy took 0.5 s the stage waited for.
    os._exit(0)


def _connect(target: LoggingTarget) -> tuple[MlflowClient | None, str | None]:
    """A client of the store; (None, the warning's text) when MLflow refuses."""
    import_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with quiet_mlflow():
        try:
            client = MlflowClient(tracking_uri=connection_uri(target.uri))
            client.get_run(target.run_id)  # opens the store, and the run must exist
        except MlflowException as exc:
            return None, f"plots not logged to MLflow run {target.run_id}: {exc.message}"
    return client, None


def _log_plots(
    client: MlflowClient, target: LoggingTarget, paths: list[str]
) -> tuple[str | None, str | None]:
    """Log ``paths`` under :data:`MLFLOW_ARTIFACT_DIR` of the run; (run id, None) or
    (None, the warning's text)."""
    from mlflow.exceptions import MlflowException

    with quiet_mlflow():
        try:
            for path in paths:
                client.log_artifact(target.run_id, path, artifact_path=MLFLOW_ARTIFACT_DIR)
        except MlflowException as exc:
            return None, f"plots not logged to MLflow run {target.run_id}: {exc.message}"
    return target.run_id, None
