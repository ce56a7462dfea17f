"""Reliability probe: run the security probe's fault cases against a real small pipeline run.

In a scratch folder (never the workspace) it simulates a small business, runs the stages through
the real CLI (``python -m churn``, MLflow's SQLite store inside the scratch folder), then breaks
one thing at a time, on a copy, and runs the stage that would read it:

* planted pickles (exported model folder, MLflow model folder) that create a marker if loaded;
* tampered model files (reversed feature names, removed calibrator, flipped baseline bytes,
  a corrupt ``model.txt`` whose manifest was rewritten to match);
* table files outside the raw folder (``..``, absolute);
* a kill (SIGKILL) between the score stage's writes, then a rerun;
* an empty ``params.yaml`` and a duplicated key;
* an absurd finite quantity (1.5e308), a 0-row customers table, an empty optional table;
* mathtext (``$\\notacommand{a}$``) in a category level shown by ``explain``.

It prints one row per case: the case, the outcome (``ok`` when the pipeline behaved as it
should) and the message the user sees. Exit code 1 if any case is not ``ok``.

Run: ``.venv/bin/python benchmarks/reliability_probe.py [--customers 1000 --months 18]``.
Takes a few minutes (the training run dominates). Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
HOSTILE_LEVEL = r"$\notacommand{a}$"

MARKER_PICKLE = (
    "import pickle, sys\n"
    "class M:\n"
    "    def __reduce__(self):\n"
    "        return (open, (sys.argv[2], 'w'))\n"
    "open(sys.argv[1], 'wb').write(pickle.dumps(M()))\n"
)
"""Writes a pickle whose unpickling creates the marker file (run in a child interpreter)."""


class Probe:
    """A scratch project, its environment and the results table."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # No MLFLOW_* variables: the default store, sqlite:///mlflow.db in the scratch folder,
        # as in a fresh clone.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
        self.env.update(
            TZ="UTC",
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        self.rows: list[tuple[str, str, str]] = []

    def churn(self, *args: str, params: Path | None = None) -> subprocess.CompletedProcess:
        """Run one CLI command in the scratch folder."""
        command = [sys.executable, "-m", "churn", args[0], "--params", str(params or "params.yaml")]
        return subprocess.run(
            [*command, *args[1:]],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def run_stage(self, stage: str) -> None:
        """Run ``stage``'s command from ``dvc.yaml`` in the scratch folder; stop if it fails."""
        args = shlex.split(STAGES[stage]["cmd"])
        assert args[:2] == ["churn", stage], args
        done = subprocess.run(
            [sys.executable, "-m", "churn", *args[1:]],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"setup step {stage} failed:\n{done.stdout[-3000:]}{done.stderr}")

    def must(self, *args: str) -> None:
        done = self.churn(*args)
        if done.returncode != 0:
            raise SystemExit(f"setup step {args[0]} failed:\n{done.stdout[-3000:]}{done.stderr}")

    def record(self, case: str, ok: bool, message: str) -> None:
        self.rows.append((case, "ok" if ok else "FAILED", " ".join(message.split())[:150]))
        print(f"  {'ok    ' if ok else 'FAILED'} {case}", flush=True)


STAGES: dict[str, Any] = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_option(stage: str, option: str) -> str:
    """The value ``dvc.yaml`` gives ``option`` in ``stage``'s command."""
    args = shlex.split(STAGES[stage]["cmd"])
    return args[args.index(option) + 1]


def error_line(done: subprocess.CompletedProcess) -> str:
    """The user-facing message of a failed command (the CLI's ``error:`` text)."""
    text = done.stderr + done.stdout
    found = re.search(r"error:(.*)", text, flags=re.DOTALL)
    message = found.group(1) if found else text[-300:]
    return f"rc {done.returncode}: " + " ".join(message.split())  # rich wraps long lines


def plant_pickle(path: Path, marker: Path) -> None:
    subprocess.run([sys.executable, "-c", MARKER_PICKLE, str(path), str(marker)], check=True)


def copy_model(probe: Probe, name: str) -> Path:
    target = probe.root / "models" / name
    shutil.copytree(probe.root / "models" / "churn", target)
    return target


def resign(model_dir: Path) -> None:
    """Rewrite the manifest to match the files, as an attacker with write access would."""
    from churn.model.artifact import write_manifest

    write_manifest(model_dir)


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


def set_up(probe: Probe, customers: int, months: int) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["simulate"].update(customers=customers, months=months, seed=5)
    params["evaluate"]["backtest_cutoffs"] = 2
    params["explain"].update(sample_rows=300, dependence_features=40)
    (probe.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    print("pipeline run in", probe.root, flush=True)
    # The setup runs the stages' own commands from dvc.yaml (the only home of paths).
    for stage in ("simulate", "ingest", "label", "features", "train", "score"):
        probe.run_stage(stage)


def evaluate(probe: Probe, model_dir: Path) -> subprocess.CompletedProcess:
    return probe.churn(
        "evaluate",
        *("--features", "data/features/features.parquet", "--model-dir", str(model_dir)),
        *("--truth", stage_option("evaluate", "--truth")),
        *("--metrics", f"reports/metrics-{model_dir.name}.json"),
        *("--plots-dir", f"reports/plots-{model_dir.name}"),
    )


def score(probe: Probe, model: str, out: str = "data/probe/scores.parquet"):
    return probe.churn("score", "--validated", "data/validated", "--model", model, "--out", out)


def ingest(probe: Probe, raw: str, params: Path | None = None) -> subprocess.CompletedProcess:
    return probe.churn(
        "ingest",
        *("--raw", raw, "--out", f"data/v-{Path(raw).name}", "--quarantine"),
        *(f"data/q-{Path(raw).name}", "--report", f"reports/ingest-{Path(raw).name}.json"),
        params=params,
    )


def copy_raw(probe: Probe, name: str) -> Path:
    target = probe.root / "data" / name
    shutil.copytree(probe.root / "data" / "raw", target)
    return target


def raw_table(raw: Path, table: str) -> Path:
    return next(p for p in raw.iterdir() if p.name.startswith(f"{table}."))


def case_pickles(probe: Probe) -> None:
    marker = probe.root / "PICKLE-RAN"
    model_dir = copy_model(probe, "pickled")
    for name in ("baseline.joblib", "python_model.pkl"):
        plant_pickle(model_dir / name, marker)
    for mlmodel in (probe.root / "mlartifacts").rglob("MLmodel"):
        plant_pickle(mlmodel.parent / "python_model.pkl", marker)
        plant_pickle(mlmodel.parent / "artifacts" / "churn_model" / "python_model.pkl", marker)
    results = [evaluate(probe, model_dir), score(probe, "models:/churn@champion")]
    ran = marker.exists()
    rcs = [r.returncode for r in results]
    probe.record(
        "pickles planted in models/churn and the MLflow model folders",
        not ran and rcs == [0, 0],
        f"evaluate rc {rcs[0]}, score (models:/churn@champion) rc {rcs[1]}; "
        f"pickle {'EXECUTED' if ran else 'never loaded'}",
    )


def case_tamper(probe: Probe) -> None:
    def expect_model_error(case: str, model_dir: Path, pattern: str, run=score) -> None:
        done = run(probe, str(model_dir)) if run is score else run(probe, model_dir)
        message = error_line(done)
        probe.record(case, done.returncode == 2 and re.search(pattern, message), message)

    reversed_dir = copy_model(probe, "reversed")
    edit_json(reversed_dir / "churn_model.json", lambda m: m["feature_names"].reverse())
    expect_model_error("feature_names reversed", reversed_dir, "checksum mismatch")
    resign(reversed_dir)
    expect_model_error("feature_names reversed, manifest re-signed", reversed_dir, "do not match")

    no_calibrator = copy_model(probe, "no-calibrator")
    edit_json(no_calibrator / "churn_model.json", lambda m: m.pop("calibrator"))
    resign(no_calibrator)
    expect_model_error("calibrator removed (re-signed)", no_calibrator, "'calibrator' is missing")

    flipped = copy_model(probe, "flipped")
    data = bytearray((flipped / "baseline.json").read_bytes())
    digits = [i for i, b in enumerate(data) if chr(b).isdigit()]
    for i in (digits[len(digits) // 3], digits[len(digits) // 2]):
        data[i] = ord("7") if data[i] != ord("7") else ord("3")
    (flipped / "baseline.json").write_bytes(bytes(data))
    expect_model_error("2 bytes flipped in the baseline", flipped, "checksum mismatch", evaluate)

    corrupt = copy_model(probe, "corrupt")
    text = (corrupt / "model.txt").read_text()
    (corrupt / "model.txt").write_text(text.replace("tree_sizes=", "tree_sizes=9999 ", 1))
    resign(corrupt)
    expect_model_error("corrupt model.txt, matching hash", corrupt, "not a well-formed LightGBM")


def case_paths(probe: Probe) -> None:
    outside = probe.root.parent / f"{probe.root.name}-outside"
    outside.mkdir(exist_ok=True)
    for label, file in (
        ("table file '../../outside/secret.csv'", "RELATIVE"),
        ("table file as an absolute path", "ABSOLUTE"),
    ):
        raw = copy_raw(probe, f"raw-{file.lower()}")
        source = raw_table(raw, "customers")
        secret = outside / f"secret{source.suffix}"
        shutil.move(source, secret)
        name = os.path.relpath(secret, raw) if file == "RELATIVE" else str(secret)
        params = yaml.safe_load((probe.root / "params.yaml").read_text())
        params["ingest"]["tables"] = {"customers": {"file": name}}
        path = probe.root / f"params-{file.lower()}.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        done = ingest(probe, str(raw), params=path)
        message = error_line(done)
        probe.record(label, done.returncode == 2 and "outside the raw folder" in message, message)


def case_kill(probe: Probe) -> None:
    folder = probe.root / "data" / "scores"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    child = (
        "import os, signal, sys\n"
        "import churn.stages.score as s\n"
        "def killed(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "s.write_table = killed\n"
        "from churn.cli import app\n"
        "app(sys.argv[1:])\n"
    )
    args = ["score", "--params", "params.yaml", "--validated", "data/validated", "--model"]
    args += ["models/churn", "--out", "data/scores/scores.parquet"]
    done = subprocess.run(
        [sys.executable, "-c", child, *args], cwd=probe.root, env=probe.env, check=False
    )
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    staging = [p.name for p in folder.parent.iterdir() if ".churn-tmp-" in p.name]
    inside = [p.name for p in folder.iterdir() if ".churn-tmp-" in p.name]
    rerun = score(probe, "models/churn", "data/scores/scores.parquet")
    left = [p.name for p in folder.parent.iterdir() if ".churn-tmp-" in p.name]
    ok = done.returncode == -9 and after == before and not inside and rerun.returncode == 0
    probe.record(
        "SIGKILL between score's writes, then rerun",
        ok and not left,
        f"killed rc {done.returncode}; scores folder {'unchanged' if after == before else 'MIXED'};"
        f" staging left beside it: {len(staging)}, inside it: {len(inside)}; "
        f"rerun rc {rerun.returncode} left {len(left)} staging folder(s)",
    )


def case_params(probe: Probe) -> None:
    empty = probe.root / "params-empty.yaml"
    empty.write_text("")
    done = probe.churn("check-params", params=empty)
    message = error_line(done)
    probe.record("empty params.yaml", done.returncode == 2 and "is empty" in message, message)
    text = (probe.root / "params.yaml").read_text()
    duplicated = probe.root / "params-duplicated.yaml"
    duplicated.write_text(text.replace("ingest:\n", "ingest:\n  max_quarantine_share: 0.9\n", 1))
    done = probe.churn("check-params", params=duplicated)
    message = error_line(done)
    probe.record(
        "duplicated YAML key", done.returncode == 2 and "duplicated key" in message, message
    )


def case_tables(probe: Probe) -> None:
    raw = copy_raw(probe, "raw-huge")
    path = raw_table(raw, "usage_events")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    frame.loc[frame.index[:3], "quantity"] = 1.5e308
    frame.to_parquet(path) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    done = ingest(probe, str(raw))
    report = json.loads((probe.root / "reports" / "ingest-raw-huge.json").read_text())
    rules = report["tables"]["usage_events"]["rules"] if done.returncode == 0 else {}
    hits = {rule: info["count"] for rule, info in rules.items() if "too_large" in rule}
    probe.record("quantity 1.5e308", done.returncode == 0 and bool(hits), f"quarantined: {hits}")

    raw = copy_raw(probe, "raw-no-customers")
    path = raw_table(raw, "customers")
    empty = pd.read_parquet(path).head(0) if path.suffix == ".parquet" else None
    if empty is not None:
        empty.to_parquet(path)
    else:
        path.write_text(path.read_text().splitlines()[0] + "\n")
    done = ingest(probe, str(raw))
    message = error_line(done)
    ok = done.returncode == 2 and "customers has 0 rows" in message and "orphan" not in message
    probe.record("customers with 0 rows", ok, message)

    raw = copy_raw(probe, "raw-empty-nps")
    path = raw_table(raw, "nps_responses")
    if path.suffix == ".parquet":
        pd.read_parquet(path).head(0).to_parquet(path)
    else:
        path.write_text(path.read_text().splitlines()[0] + "\n")
    done = ingest(probe, str(raw))
    note = ""
    if done.returncode == 0:
        report = json.loads((probe.root / "reports" / "ingest-raw-empty-nps.json").read_text())
        note = report["tables"]["nps_responses"].get("note", "")
    probe.record("empty optional table (nps)", "counts as absent" in note, note or error_line(done))


def case_mathtext(probe: Probe) -> None:
    model_dir = copy_model(probe, "mathtext")
    meta = json.loads((model_dir / "churn_model.json").read_text())
    feature, levels = next(iter(meta["categorical_levels"].items()))
    original = levels[0]
    levels[0] = HOSTILE_LEVEL
    (model_dir / "churn_model.json").write_text(json.dumps(meta))
    resign(model_dir)
    features = pd.read_parquet(probe.root / "data" / "features" / "features.parquet")
    features[feature] = features[feature].replace(original, HOSTILE_LEVEL)
    features.to_parquet(probe.root / "data" / "features" / "mathtext.parquet")
    out = probe.root / "reports" / "explain-mathtext"
    done = probe.churn(
        "explain",
        *("--features", "data/features/mathtext.parquet", "--model-dir", str(model_dir)),
        *("--out-dir", str(out)),
    )
    plot = out / f"dependence_{re.sub(r'[^A-Za-z0-9_.-]+', '_', feature)}.png"
    ok = done.returncode == 0 and plot.exists()
    message = f"rc {done.returncode}; {plot.name} {'drawn' if plot.exists() else 'MISSING'}"
    probe.record(f"mathtext level in '{feature}' (explain)", ok, message)


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(case) for case, _, _ in rows)
    print(f"\n{'case'.ljust(width)}  outcome  message")
    print(f"{'-' * width}  -------  {'-' * 60}")
    for case, outcome, message in rows:
        print(f"{case.ljust(width)}  {outcome.ljust(7)}  {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="churn-reliability-"))
    probe = Probe(root)
    try:
        set_up(probe, args.customers, args.months)
        for case in (
            case_pickles,
            case_tamper,
            case_paths,
            case_kill,
            case_params,
            case_tables,
            case_mathtext,
        ):
            case(probe)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(root.parent / f"{root.name}-outside", ignore_errors=True)
    print_table(probe.rows)
    return 0 if all(outcome == "ok" for _, outcome, _ in probe.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
