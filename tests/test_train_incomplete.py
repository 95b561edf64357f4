"""tess train on a dataset with a deleted class: an error naming it, and with
--allow-incomplete a run whose summary.json records what was missing."""

import json

import pytest
from typer.testing import CliRunner

from test_data_layout import nmnist_tree
from test_data_writers import no_network  # noqa: F401  (a fixture)
from tess_keras.cli.main import app


@pytest.mark.slow
def test_deleted_class_stops_tess_train_and_allow_incomplete_runs_and_records_it(tmp_path, no_network):
    base = nmnist_tree(tmp_path / "data", train_per_class=2, test_per_class=1)
    for path in (base / "Test" / "7").iterdir():
        path.unlink()
    (base / "Test" / "7").rmdir()
    args = ["train", "--dataset", "nmnist", "--data-dir", str(tmp_path / "data"), "--time-steps", "2",
            "--epochs", "1", "--batch-size", "8", "--validation-fraction", "0"]
    runner = CliRunner()
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "refused")], env={"COLUMNS": "200"})
    text = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "class(es) 7 under" in text and "--allow-incomplete" in text, text
    assert "Traceback" not in text and not (tmp_path / "refused" / "summary.json").exists()

    out = tmp_path / "run"
    result = runner.invoke(app, [*args, "--allow-incomplete", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["allow_incomplete"] is True and summary["incomplete"] == ["NMNIST/Test/7/: no .bin files"]
    assert summary["class_counts"]["test"] == [1] * 7 + [0] + [1] * 2
    assert summary["class_counts"]["train"] == [2] * 10 and 0.0 <= summary["test_accuracy"] <= 1.0
