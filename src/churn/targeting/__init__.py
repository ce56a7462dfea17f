"""From risk to action: plays, their effects, expected value and capacity-limited targeting.

A pure library (frames and config in, frames out), independent of the other libraries:

* :mod:`~churn.targeting.playbook`: which plays address a customer's reasons, their cost and
  the "dose" of the addressed families in the model's explanation.
* :mod:`~churn.targeting.uplift`: play effects from logged retention actions (difference in
  churn between treated and control by segment, and a T-learner), with uncertainty.
* :mod:`~churn.targeting.value`: expected value per customer and play, and the greedy
  capacity-constrained selection.
* :mod:`~churn.targeting.policies`: the baseline policies and their comparison on the truth.
"""
