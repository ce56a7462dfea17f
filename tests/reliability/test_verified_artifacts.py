"""Reliability: a tampered or corrupt model artifact is a clear ModelError naming the file.

Each case changes an exported model the way the security probe did; loading must fail with a
message naming the file, before anything wrong is scored, and the previous outputs stay as they
were. The "re-signed" cases also rewrite ``manifest.json``, as an attacker with write access
would: then the schema and structure checks must still catch the change.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.exported import export_model_dir, tiny_train_params
from support.tiny import make_feature_frame

from churn.errors import ModelError
from churn.model.artifact import META_FILE, MODEL_FILE, ChurnModel, write_manifest
from churn.stages.evaluate import run_evaluate
from churn.stages.train import BASELINE_FILE


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("tamper")
    features = make_feature_frame(n_customers=300, n_cutoffs=5, seed=6)
    export_model_dir(features, root / "churn")
    features.to_parquet(root / "features.parquet")
    return root


@pytest.fixture
def model_dir(exported, tmp_path) -> Path:
    directory = tmp_path / "churn"
    shutil.copytree(exported / "churn", directory)
    return directory


def edit_meta(directory: Path, change, resign: bool) -> None:
    meta = json.loads((directory / META_FILE).read_text())
    change(meta)
    (directory / META_FILE).write_text(json.dumps(meta))
    if resign:
        write_manifest(directory)


def test_reversed_feature_names_are_refused_by_checksum(model_dir):
    edit_meta(model_dir, lambda m: m["feature_names"].reverse(), resign=False)
    with pytest.raises(ModelError, match=f"checksum mismatch for {re.escape(str(model_dir))}"):
        ChurnModel.load(model_dir)


def test_reversed_feature_names_resigned_are_refused_by_the_booster_header(model_dir):
    edit_meta(model_dir, lambda m: m["feature_names"].reverse(), resign=True)
    with pytest.raises(ModelError, match=f"{MODEL_FILE} is not a well-formed .* do not match"):
        ChurnModel.load(model_dir)


def test_a_removed_calibrator_is_a_model_error_not_a_key_error(model_dir):
    edit_meta(model_dir, lambda m: m.pop("calibrator"), resign=True)
    with pytest.raises(ModelError, match=f"{META_FILE} is not a valid .*'calibrator' is missing"):
        ChurnModel.load(model_dir)


def test_two_flipped_bytes_in_the_baseline_stop_evaluate(exported, model_dir, tmp_path):
    path = model_dir / BASELINE_FILE
    data = bytearray(path.read_bytes())
    digits = [i for i, b in enumerate(data) if chr(b).isdigit()]
    for i in (digits[len(digits) // 3], digits[len(digits) // 2]):
        data[i] = ord("7") if data[i] != ord("7") else ord("3")
    path.write_bytes(bytes(data))
    (tmp_path / "metrics.json").write_text('{"earlier": true}')
    with pytest.raises(ModelError, match=f"checksum mismatch for .*{BASELINE_FILE}"):
        run_evaluate(
            tiny_train_params(),
            exported / "features.parquet",
            model_dir,
            None,
            tmp_path / "metrics.json",
            tmp_path / "plots",
        )
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"earlier": True}
    assert not (tmp_path / "plots").exists()


def _reblock(text: str, edit) -> str:
    """Apply ``edit`` to the first tree block and recompute tree_sizes (a consistent forgery)."""
    head, _, rest = text.partition("\n\n")
    section, _, tail = rest.partition("end of trees")
    blocks = [b for b in re.split(r"(?=^Tree=\d+\n)", section, flags=re.MULTILINE) if b]
    blocks[0] = edit(blocks[0])
    sizes = " ".join(str(len(b.encode())) for b in blocks)
    head = re.sub(r"tree_sizes=[\d ]+", f"tree_sizes={sizes}", head)
    return head + "\n\n" + "".join(blocks) + "end of trees" + tail


CORRUPTIONS = {
    "wrong tree_sizes": lambda t: t.replace("tree_sizes=", "tree_sizes=9999 ", 1),
    "truncated": lambda t: t[: len(t) // 2],
    "child out of range": lambda t: _reblock(
        t, lambda b: re.sub(r"left_child=-?\d+", "left_child=4000", b, count=1)
    ),
    "feature index out of range": lambda t: _reblock(
        t, lambda b: re.sub(r"split_feature=\d+", "split_feature=77", b, count=1)
    ),
    "leaf count inflated": lambda t: _reblock(
        t, lambda b: re.sub(r"num_leaves=\d+", "num_leaves=400", b, count=1)
    ),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_model_txt_with_a_matching_hash_cannot_abort_the_process(model_dir, corruption):
    """Each of these made LightGBM abort (SIGABRT/SIGSEGV) when parsed; now a ModelError."""
    path = model_dir / MODEL_FILE
    path.write_text(CORRUPTIONS[corruption](path.read_text()))
    write_manifest(model_dir)  # the hash matches: only the structure check stands in the way
    probe = (
        "import sys\n"
        "from churn.errors import ModelError\n"
        "from churn.model.artifact import ChurnModel\n"
        "try:\n"
        f"    ChurnModel.load({str(model_dir)!r})\n"
        "except ModelError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"{path} is not a well-formed LightGBM model" in done.stdout
