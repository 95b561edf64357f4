"""``tess datasets --json``: what ``tess train`` would use, counted from file lists alone."""

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from test_data_layout import gesture_tree, nmnist_tree
from test_data_writers import no_network  # noqa: F401
from tess_keras import data


def _json(tmp_path, *extra):
    from tess_keras.cli.main import app

    result = CliRunner().invoke(app, ["datasets", "--data-dir", str(tmp_path), "--json", *extra])
    assert result.exit_code == 0, result.output
    return {entry["name"]: entry for entry in json.loads(result.stdout)}


def test_json_counts_match_what_load_dataset_gives(tmp_path, no_network, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no_keras"))
    nmnist_tree(tmp_path, train_per_class=4, test_per_class=2)
    (tmp_path / "NMNIST" / "Train" / "0" / ".DS_Store").write_bytes(b"x")
    gesture_tree(tmp_path, users_train=tuple(range(1, 11)))
    entries = _json(tmp_path)
    assert set(entries) >= set(data.INFO)
    nmnist = entries["nmnist"]
    assert nmnist["status"] == "found" and nmnist["path"] == str(tmp_path / "NMNIST")
    assert nmnist["samples"] == {"train": 30, "validation": 10, "test": 20}
    assert nmnist["class_counts"] == {"train": [3] * 10, "validation": [1] * 10, "test": [2] * 10}
    assert nmnist["skipped"] == {"non_sample_files": 1} and nmnist["validation_fraction"] == 0.1
    for name, options in (("nmnist", {"time_steps": 2}), ("dvs-gesture", {"time_steps": 2, "size": 8}),
                          ("digits", {}), ("mnist", {})):
        splits = data.load_dataset(name, tmp_path, **options)
        assert entries[name]["class_counts"] == splits.class_counts(), name
    gesture = entries["dvs-gesture"]
    assert gesture["samples"] == {"train": 99, "validation": 11, "test": 22}  # one user of ten for validation
    assert entries["cifar10-dvs"]["status"] == "missing" and entries["cifar10-dvs"]["samples"] is None
    # Another fraction, and 0.
    assert _json(tmp_path, "--validation-fraction", "0.5")["nmnist"]["samples"]["validation"] == 20
    assert _json(tmp_path, "--validation-fraction", "0")["nmnist"]["class_counts"]["validation"] == [0] * 10


def test_json_status_incomplete_and_invalid(tmp_path, no_network, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no_keras"))
    nmnist_tree(tmp_path)
    (tmp_path / "NMNIST" / "Train" / "12").mkdir()
    entries = _json(tmp_path)
    assert entries["nmnist"]["status"] == "invalid" and "Train/12 is not a class folder" in entries["nmnist"]["detail"]
    (tmp_path / "NMNIST" / "Train" / "12").rmdir()
    for path in (tmp_path / "NMNIST" / "Train" / "2").iterdir():
        path.unlink()
    entry = _json(tmp_path)["nmnist"]
    assert entry["status"] == "incomplete" and entry["incomplete"] == ["NMNIST/Train/2/: no .bin files"]
    assert entry["class_counts"]["train"][2] == 0 and "--allow-incomplete" in entry["detail"]


def test_json_without_tensorflow_tonic_or_sklearn_and_a_file_as_data_dir(tmp_path):
    nmnist_tree(tmp_path)
    code = ("import sys, json; from typer.testing import CliRunner; from tess_keras.cli.main import app; "
            f"r = CliRunner().invoke(app, ['datasets', '--data-dir', {str(tmp_path)!r}, '--json']); "
            "assert r.exit_code == 0, r.output; json.loads(r.stdout); "
            "print('tensorflow' in sys.modules, 'tonic' in sys.modules, 'sklearn' in sys.modules)")
    env = {**os.environ, "KERAS_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "False"]  # nothing heavy is imported to count
    from tess_keras.cli.main import app

    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    result = CliRunner().invoke(app, ["datasets", "--json"], env={"TESS_DATA_DIR": str(a_file)})
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"is {a_file}, which is a file, not a folder" in " ".join(result.output.split())
