"""The ``simulate`` stage: a simulated B2B SaaS business, the project's measuring instrument.

See :mod:`churn.stages.simulate.engine` for how the modules fit together. Names starting
with an underscore are private to this package (shared between its modules, and read by its
tests to recompute the truth); the public surface is :data:`__all__`.
"""

from churn.stages.simulate.engine import run_simulate, simulate
from churn.stages.simulate.tables import SimulationResult

__all__ = ["SimulationResult", "run_simulate", "simulate"]
