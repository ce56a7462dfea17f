"""Point-in-time features: one module per family, the catalog, the pure core and the runner.

Import :func:`churn.features.build.build_features` for the pure computation and
:func:`churn.stages.features.run_features` for the stage. This package's ``__init__`` imports
nothing, so importing a submodule stays cheap.
"""
