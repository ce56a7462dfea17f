"""Allow ``python -m churn`` to behave like the ``churn`` command."""

from churn.cli import app

if __name__ == "__main__":
    app(prog_name="churn")
