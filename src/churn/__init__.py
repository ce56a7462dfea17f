"""churn: point-in-time churn prediction for subscription businesses."""

__version__ = "0.1.0"
