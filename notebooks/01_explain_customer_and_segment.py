# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Explain one customer and one segment
#
# Why is a customer at risk, and what drives risk in a whole segment? Everything here comes from
# what `dvc repro` wrote: the scores with their reasons, the per-feature contributions the score
# stage keeps beside them (`scores_contributions.parquet`, exact TreeSHAP in log-odds), and the
# champion model from the MLflow registry. Set `CHURN_PROJECT_DIR` to use another project
# (default: the repository this notebook lives in). Every path is the one `dvc.yaml` passes to
# the stage that wrote it (see `stage_path`), so the notebook follows the pipeline's layout.

# %%
import os
import shlex
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import yaml


def find_project() -> Path:
    """Return $CHURN_PROJECT_DIR, else the nearest directory upwards holding dvc.yaml."""
    if os.environ.get("CHURN_PROJECT_DIR"):
        return Path(os.environ["CHURN_PROJECT_DIR"]).resolve()
    for directory in (Path.cwd(), *Path.cwd().parents):
        if (directory / "dvc.yaml").exists():
            return directory
    raise FileNotFoundError("no dvc.yaml above the working directory; set CHURN_PROJECT_DIR")


def stage_option(stage: str, option: str) -> str:
    """Return what dvc.yaml passes to ``churn <stage>`` as ``--<option>``.

    dvc.yaml is the only home of paths, so the notebook reads them there instead of repeating
    them; file names inside an output directory come from :mod:`churn.layout`.
    """
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    words = shlex.split(stages[stage]["cmd"])
    return words[words.index(f"--{option}") + 1]


def stage_path(stage: str, option: str) -> Path:
    """Return the path dvc.yaml passes to ``churn <stage>`` as ``--<option>``, in the project."""
    return PROJECT / stage_option(stage, option)


PROJECT = find_project()
# Scoring used models:/churn@champion; resolve it against this project's MLflow store.
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT / 'mlflow.db'}")

from churn import load_model, load_report_inputs, with_segments  # noqa: E402 - after the URI
from churn.domain.catalog import ineligible_features  # noqa: E402
from churn.layout import CHANGES_SUFFIX, CONTRIBUTIONS_SUFFIX, sidecar_path  # noqa: E402
from churn.report.inputs import ReportPaths  # noqa: E402

scores_path = stage_path("score", "out")
scores = pd.read_parquet(scores_path)
contributions = pd.read_parquet(sidecar_path(scores_path, CONTRIBUTIONS_SUFFIX))
model = load_model(stage_option("score", "model"))
catalog = model.catalog.set_index("name")
print(f"{len(scores):,} customers scored at {scores['cutoff'].max():%Y-%m-%d}")

# %% [markdown]
# ## One customer: the one with the most revenue at risk
#
# The scores are sorted by expected revenue at risk, so the first row is the customer a retention
# team would call first. The reasons are the features that push their risk up the most, among
# those that say *why* a customer may leave: exposure and contract timing (days to renewal,
# billing period, tenure; catalog column `reason_eligible`) are never reasons, and a value equal
# to the typical customer's is skipped (docs/reasons.md). When the model has a survival head
# (docs/survival.md), the scores also carry the risk within each horizon
# (`churn_probability_30d`, `_60d`, `_90d`) and the next decision date: when the contract lets
# the customer leave. It is context, never a reason.

# %%
customer = scores.iloc[0]
print(
    f"customer {customer['customer_id']}: churn probability {customer['churn_probability']:.1%}, "
    f"MRR {customer['mrr']:,.0f}, revenue at risk {customer['expected_revenue_at_risk']:,.0f}"
)
horizons = sorted(
    (int(c.removeprefix("churn_probability_").removesuffix("d")), c)
    for c in scores.columns
    if c.startswith("churn_probability_") and c.endswith("d")
)
if horizons:
    print("  " + ", ".join(f"within {h} days {customer[c]:.1%}" for h, c in horizons))
if pd.notna(customer.get("next_decision_date")):
    print(f"  next decision (renewal or billing date): {customer['next_decision_date']:%Y-%m-%d}")
for i in range(1, 4):
    if pd.notna(customer.get(f"reason_{i}_text")):
        print(f"  {i}. {customer[f'reason_{i}_text']}")

# %% [markdown]
# ### Waterfall: from the average customer to this one
#
# Each bar is one feature's contribution in log-odds; they add up exactly from the model's base
# value to this customer's raw score, which the calibrator turns into the probability above.

# %%
row = contributions.set_index("customer_id").loc[customer["customer_id"]]
base = float(row["base_value"])
parts = row[list(model.feature_names)].astype(float)
raw = base + parts.sum()
probability = float(model.calibrator.transform([raw])[0])
assert abs(probability - customer["churn_probability"]) < 1e-4, "contributions do not add up"

top = parts.reindex(parts.abs().sort_values(ascending=False).index[:10])
steps = pd.concat(
    [top, pd.Series({f"{len(parts) - len(top)} other features": parts.drop(top.index).sum()})]
)
starts = base + steps.cumsum().shift(fill_value=0.0)
# The reasons carry the customer's values of their features; show them on those bars.
values = {
    customer[f"reason_{i}_feature"]: customer[f"reason_{i}_value"]
    for i in (1, 2, 3)
    if pd.notna(customer.get(f"reason_{i}_feature"))
}
labels = [f"{name} = {values[name]}" if name in values else name for name in steps.index]
fig, ax = plt.subplots(figsize=(9, 5))
ax.barh(
    labels[::-1],
    steps[::-1],
    left=starts[::-1],
    color=["#b3261e" if v > 0 else "#2e7d4f" for v in steps[::-1]],
)
ax.axvline(base, color="#9aa5b1", linestyle="--", label=f"base value {base:.2f}")
ax.axvline(raw, color="#1f2933", label=f"this customer {raw:.2f} -> {probability:.1%}")
ax.set_xlabel("log-odds of churning (red raises risk, green lowers it)")
ax.legend(loc="lower left", fontsize=8)
fig.tight_layout()

# %% [markdown]
# ### What changed since the previous scoring
#
# The score stage compares with the previous run when there was one (`scores_changes.parquet`):
# the probability change and the features whose contribution moved the most, each with a
# sentence worded like the reasons ("support tickets opened in the last 30 days rose from 0 to
# 4"); a feature whose value did not change is never named (docs/reasons.md).

# %%
changes_path = sidecar_path(scores_path, CHANGES_SUFFIX)
if changes_path.exists():
    changes = pd.read_parquet(changes_path).set_index("customer_id")
    change = changes.loc[customer["customer_id"]]
    print(
        f"{change['status']}: {change['previous_probability']:.1%} -> "
        f"{change['churn_probability']:.1%}"
    )
    for i in range(1, 4):
        text = change.get(f"moved_{i}_text")
        if pd.notna(text):
            print(f"  {i}. {text}")
else:
    print("no previous scoring to compare with yet: run the score stage again after new data")

# %% [markdown]
# ### Customer cards, as the report draws them
#
# The report's "Customer cards" section puts all of the above on one card per riskiest
# customer (`report.customer_cards` in params.yaml): risk within each horizon, next decision,
# reasons and what changed. Personal data never appears on a card.

# %%
from IPython.display import HTML  # noqa: E402

from churn.config import ReportConfig  # noqa: E402
from churn.report.cards import cards_section  # noqa: E402

inputs = load_report_inputs(
    ReportPaths(
        ingest_report=stage_path("report", "ingest-report"),
        train_report=stage_path("report", "train-report"),
        model_record=stage_path("report", "model-record"),
        metrics=stage_path("report", "metrics"),
        plots_dir=stage_path("report", "plots-dir"),
        explain_dir=stage_path("report", "explain-dir"),
        catalog=stage_path("report", "catalog"),
        labels=stage_path("report", "labels"),
        scores=scores_path,
    )
)
card_lead, card_body = cards_section(inputs, ReportConfig(customer_cards=3))
print(card_lead)
HTML(card_body)

# %% [markdown]
# ## One segment: the plan with the most revenue at risk
#
# Scores carry no plan; the report's helper joins it from the labels. Mean contributions by
# feature family show what drives risk in the segment compared with everyone else, over the
# reason-eligible features only (contract timing says when customers can leave, not why).

# %%
segmented = with_segments(inputs)  # the report's inputs, loaded for the cards above
plan = segmented.groupby("plan")["expected_revenue_at_risk"].sum().idxmax()
in_plan = segmented.set_index("customer_id")["plan"].eq(plan)
print(
    f"plan {plan!r}: {in_plan.sum()} customers, mean churn probability "
    f"{segmented.loc[in_plan.to_numpy(), 'churn_probability'].mean():.1%} "
    f"(everyone: {segmented['churn_probability'].mean():.1%})"
)

eligible = [
    name for name in model.feature_names if name not in ineligible_features(model.catalog)
]
by_family = (
    contributions.set_index("customer_id")[eligible]
    .T.groupby(catalog["family"].reindex(eligible).to_numpy())
    .sum()
    .T
)
comparison = pd.DataFrame(
    {
        f"plan {plan}": by_family[in_plan.reindex(by_family.index, fill_value=False)].mean(),
        "other customers": by_family[~in_plan.reindex(by_family.index, fill_value=False)].mean(),
    }
)
comparison.plot.barh(
    figsize=(7, 3.5),
    xlabel="mean contribution (log-odds)",
    title=f"What drives risk on plan {plan!r}",
)
comparison.round(3)
