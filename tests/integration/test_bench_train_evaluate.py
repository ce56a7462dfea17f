"""``benchmarks/bench_train_evaluate.py`` times the functions the stages call by name.

The benchmark wraps each phase function where the runners look it up; when a function moves
to another module the wrapper no longer finds it and the benchmark stops (this happened when
the baseline's fit moved to :mod:`churn.model.baseline`). The test resolves every phase.
"""

from __future__ import annotations

import importlib

from support.scripts import load_script

bench = load_script("benchmarks/bench_train_evaluate.py")


def test_every_timed_phase_names_a_function_its_module_holds():
    missing = [
        f"{module}.{attribute}"
        for module, attribute, _ in bench.PHASES
        if not callable(getattr(importlib.import_module(module), attribute, None))
    ]

    assert missing == []


def test_the_baseline_phase_wraps_the_function_the_sample_fit_calls():
    # fit_sample_baseline looks fit_baseline up in its own module at call time: the phase
    # must wrap it there for train's and the backtest's baseline fits to be timed.
    modules = {attribute: module for module, attribute, _ in bench.PHASES}

    assert modules["fit_baseline"] == "churn.model.baseline"
