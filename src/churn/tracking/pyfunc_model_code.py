"""MLflow "models from code" file of the churn pyfunc; MLflow runs it when loading the model.

It is never imported by churn itself: :func:`churn.tracking.pyfunc.pyfunc_log_arguments` passes
its path to ``mlflow.pyfunc.log_model``, which stores this file instead of a pickle. Loading
runs it (the ``set_model`` call below is the models-from-code protocol), then
:meth:`ChurnPyfuncModel.load_context` reads the ChurnModel's data files.
"""

from mlflow.models import set_model

from churn.tracking.pyfunc import ChurnPyfuncModel

set_model(ChurnPyfuncModel())
