"""How processes allocate: Arrow's system allocator and numpy without huge-page advice,
unless the user chose otherwise (churn.io.memory)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import pyarrow as pa
from churn.io import use_system_memory_pool
before = pa.default_memory_pool().backend_name
after = use_system_memory_pool()
buffer = pa.allocate_buffer(1 << 20)  # allocations now come from the chosen pool
print(before, after, pa.default_memory_pool().backend_name, pa.total_allocated_bytes() >= 1 << 20)
"""


#: The variables that carry a user's own choice, left out of the tests' environment unless a
#: test sets them.
USER_CHOICES = ("ARROW_DEFAULT_MEMORY_POOL", "NUMPY_MADVISE_HUGEPAGE")


def run_in_fresh_process(script: str = SCRIPT, **environment: str) -> list[str]:
    """Run ``script`` in a new interpreter (the pool and numpy's advice are process-wide, and
    numpy reads its variable on import) and split its output."""
    env = {k: v for k, v in os.environ.items() if k not in USER_CHOICES}
    env.update(environment)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def test_use_system_memory_pool_switches_arrow_to_the_system_allocator() -> None:
    before, after, now, allocated = run_in_fresh_process()
    assert before != "system"  # the wheels' default (mimalloc or jemalloc) ...
    assert (after, now) == ("system", "system")  # ... replaced by the C library's
    assert allocated == "True"


@pytest.mark.parametrize("backend", ["jemalloc", "mimalloc"])
def test_use_system_memory_pool_keeps_the_users_choice(backend: str) -> None:
    import pyarrow as pa

    available = {"jemalloc": pa.jemalloc_memory_pool, "mimalloc": pa.mimalloc_memory_pool}
    try:
        available[backend]()
    except NotImplementedError:
        pytest.skip(f"pyarrow was built without {backend}")
    before, after, now, _ = run_in_fresh_process(ARROW_DEFAULT_MEMORY_POOL=backend)
    assert before == after == now == backend


def test_every_command_allocates_with_the_system_pool(tmp_path) -> None:
    """A stage command run as the pipeline runs it logs the pool it switched to."""
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  source: files\n")  # the simulator only writes its markers
    env = {k: v for k, v in os.environ.items() if k not in USER_CHOICES}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "churn",
            "-v",
            "simulate",
            "--params",
            str(params),
            "--out",
            str(tmp_path / "raw"),
            "--truth",
            str(tmp_path / "truth"),
        ],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Arrow allocates with system" in result.stderr + result.stdout
    assert "numpy advises huge pages: no" in result.stderr + result.stdout


def test_fit_workers_allocate_with_the_system_pool() -> None:
    """The evaluate stage's spawned fit workers switch too (the pool's initializer)."""
    from churn.io import get_arrow_pool_backend
    from churn.stages.fit_workers import open_fit_pool

    with open_fit_pool(1) as pool:
        assert pool.submit(get_arrow_pool_backend).result() == "system"


PAGES_SCRIPT = """
from churn.io import numpy_advises_huge_pages, set_up_process_memory
before = numpy_advises_huge_pages()
set_up_process_memory()
print(before, numpy_advises_huge_pages())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="numpy advises huge pages on Linux only")
def test_set_up_process_memory_turns_numpys_huge_page_advice_off() -> None:
    # numpy's default on Linux, then off
    assert run_in_fresh_process(PAGES_SCRIPT) == ["True", "False"]


@pytest.mark.parametrize(("value", "advised"), [("1", "True"), ("0", "False")])
def test_numpys_huge_page_advice_keeps_the_users_choice(value: str, advised: str) -> None:
    assert run_in_fresh_process(PAGES_SCRIPT, NUMPY_MADVISE_HUGEPAGE=value) == [advised, advised]


def test_fit_workers_use_small_pages(monkeypatch) -> None:
    """The evaluate and target stages' spawned workers turn the advice off too."""
    from churn.io import numpy_advises_huge_pages
    from churn.stages.fit_workers import open_fit_pool

    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)  # the workers inherit it

    with open_fit_pool(1) as pool:
        assert pool.submit(numpy_advises_huge_pages).result() is False
