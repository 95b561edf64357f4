"""``tess`` command-line errors, help and info (no training)."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tess_keras import training
from tess_keras.cli.main import app

runner = CliRunner()


def run_error(args):
    result = runner.invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert text.startswith("error:"), text
    return text


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tess_keras.cli.main import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "for command in ('train', 'eval', 'profile', 'info'):\n"
        "    assert command in result.output, command\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_tess_help_subprocess():
    result = subprocess.run(["tess", "train", "--help"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for option in ("--dataset", "--rule", "--resume", "--config", "--limit-train", "--alpha-post"):
        assert option in result.stdout


WITHOUT_TENSORFLOW = (
    "import sys\n"
    "from importlib.machinery import PathFinder\n"
    "class WithoutTensorFlow(PathFinder):  # as if TensorFlow were not installed\n"
    "    @classmethod\n"
    "    def find_spec(cls, fullname, path=None, target=None):\n"
    "        if fullname.split('.')[0] == 'tensorflow':\n"
    "            return None\n"
    "        return PathFinder.find_spec(fullname, path, target)\n"
    "sys.meta_path[sys.meta_path.index(PathFinder)] = WithoutTensorFlow\n"
    "from tess_keras.cli.main import run\n"
    "sys.argv = ['tess'] + sys.argv[1:]\n"
    "run()\n"
)


@pytest.mark.parametrize("args", [["train", "--out", "run"], ["info"]])
def test_missing_tensorflow_names_the_extras(args, tmp_path):
    """TensorFlow comes from the cpu or gpu extra; without it a command says so."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *args], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"})
    assert "Traceback" not in result.stderr, result.stderr
    if args[0] == "info":  # the table still shows everything else
        assert result.returncode == 0, result.stderr
        assert "unknown until TensorFlow is installed" in result.stdout and "qemu-system-arm" in result.stdout
    else:
        assert result.returncode == 2
        text = " ".join(result.stderr.split())
        assert text.startswith("error: TensorFlow is not installed"), text
        assert "pip install -e '.[cpu]'" in text and "pip install -e '.[gpu]'" in text
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "mnist-nope"], "unknown dataset 'mnist-nope'; choose one of:"),
        (["--rule", "hebb"], "unknown rule 'hebb'; choose one of: tess, stllr, bptt"),
        (["--model", "resnet"], "unknown model 'resnet'; choose one of: vgg9, mcu"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--batch-size", "-4"], "--batch-size must be at least 1, got -4"),
        (["--time-steps", "-1"], "--time-steps must be 0 or more"),
        (["--lr", "-0.1"], "--lr must be a positive finite number"),
        (["--lr", "nan"], "--lr must be a positive finite number"),
        (["--alpha-post", "3"], "--alpha-post must be between -1 and 1"),
    ],
)
def test_train_option_errors(args, message, tmp_path):
    text = run_error(["train", *args, "--out", str(tmp_path / "run")])
    assert message in text
    assert not (tmp_path / "run").exists()  # nothing written for a bad option


def test_unknown_dataset_lists_digits(tmp_path):
    assert "digits" in run_error(["train", "--dataset", "nope", "--out", str(tmp_path / "r")])


def test_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    text = run_error(["train", "--out", str(blocker / "run"), "--epochs", "1"])
    assert "cannot write the run directory" in text and "--out" in text
    assert blocker.read_text() == "not a folder"


def saved_run(tmp_path, **changes):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = dataclasses.replace(training.TrainConfig(out=str(run_dir), time_steps=4), **changes)
    (run_dir / training.CONFIG).write_text(json.dumps(dataclasses.asdict(config)))
    return run_dir


def test_existing_run_is_not_overwritten(tmp_path):
    run_dir = saved_run(tmp_path)
    before = (run_dir / training.CONFIG).read_text()
    text = run_error(["train", "--out", str(run_dir), "--epochs", "1"])
    assert f"tess train --resume {run_dir}" in text
    assert (run_dir / training.CONFIG).read_text() == before


def test_resume_with_incompatible_option(tmp_path):
    run_dir = saved_run(tmp_path, batch_size=32)
    text = run_error(["train", "--resume", str(run_dir), "--batch-size", "16"])
    assert "--batch-size 16 differs from the run being resumed (--batch-size 32)" in text
    text = run_error(["train", "--resume", str(run_dir), "--rule", "bptt"])
    assert "--rule bptt differs" in text


def test_resume_errors(tmp_path):
    assert "does not exist" in run_error(["train", "--resume", str(tmp_path / "nothing")])
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in run_error(["train", "--resume", str(tmp_path / "empty")])
    run_dir = saved_run(tmp_path)
    other = tmp_path / "other"
    assert "name different runs" in run_error(["train", "--resume", str(run_dir), "--out", str(other)])


def test_config_file(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('dataset = "digits"\nbatch-size = 8\nlr = 0.01\nrule = "bptt"\n')
    config = training.resolve_config({"rule": "stllr"}, recipe)
    assert (config.batch_size, config.lr, config.rule) == (8, 0.01, "stllr")  # the command line wins
    assert (config.model, config.time_steps, config.epochs) == ("mcu", 4, 20)  # digits recipe
    recipe.write_text("batch_sise = 8\n")
    assert "unknown key 'batch_sise'" in run_error(["train", "--config", str(recipe)])
    recipe.write_text('epochs = "ten"\n')
    assert "epochs must be an integer" in run_error(["train", "--config", str(recipe)])
    recipe.write_text("epochs = [\n")
    assert "is not valid TOML" in run_error(["train", "--config", str(recipe)])
    assert "does not exist" in run_error(["train", "--config", str(tmp_path / "missing.toml")])


def test_recipes_fill_unset_options():
    config = training.resolve_config({})
    assert (config.dataset, config.model, config.time_steps, config.batch_size, config.alpha_post, config.epochs) == (
        "digits", "mcu", 4, 32, 1.0, 20)
    from tess_keras import data

    expected = {"cifar10": (6, 128, 1.0), "cifar100": (6, 128, 1.0), "cifar10-dvs": (10, 64, 0.0), "dvs-gesture": (20, 16, 1.0)}
    for name, (steps, batch, alpha) in expected.items():
        if name in data.LOADERS:
            config = training.resolve_config({"dataset": name})
            assert (config.model, config.time_steps, config.batch_size, config.alpha_post, config.epochs) == (
                "vgg9", steps, batch, alpha, 200)


def test_missing_dataset_files(tmp_path):
    from tess_keras import data

    if "cifar10-dvs" not in data.LOADERS:
        pytest.skip("the CIFAR10-DVS loader is not part of this tree")
    text = run_error(["train", "--dataset", "cifar10-dvs", "--data-dir", str(tmp_path / "nodata"),
                      "--out", str(tmp_path / "run")])
    assert "CIFAR10DVS" in text and "--data-dir" in text
    assert not (tmp_path / "run").exists()  # no empty run directory left behind


def test_eval_errors(tmp_path):
    assert "does not exist" in run_error(["eval", str(tmp_path / "none")])
    run_dir = saved_run(tmp_path)
    assert "has no model.keras" in run_error(["eval", str(run_dir)])


def test_info_lists_versions_and_tools():
    import keras
    import tensorflow as tf

    result = runner.invoke(app, ["info"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    for expected in ("Python", tf.__version__, keras.__version__, "tonic", "GPUs", "arm-none-eabi-gcc", "qemu-system-arm"):
        assert expected in text, expected


def test_checkpoint_round_trip(tmp_path):
    """Weights, Adam state (moments, iteration, learning rate), the
    scheduler's state, the history and mid-epoch running metrics all come
    back from the checkpoint into a freshly built model."""
    import keras
    import numpy as np

    from tess_keras import models

    def build(seed):
        keras.utils.set_random_seed(seed)
        model = models.build_model("mcu", (8, 8, 1), 10, "tess")
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.optimizer.build(model.trainable_variables)
        return model

    model = build(1)
    for variable in model.optimizer.variables:
        variable.assign(np.random.default_rng(0).normal(size=variable.shape).astype(variable.dtype))
    model.optimizer.iterations.assign(17)
    model.optimizer.learning_rate.assign(2.5e-4)
    row = dict(epoch=1, loss=2.0, accuracy=0.2, val_loss=2.1, val_accuracy=0.25, lr=1e-3, seconds=3.0)
    state = training.TrainingState(epochs_done=1, batches_done=7, partial_seconds=1.5, history=[row],
                                   scheduler={"best": 2.1, "wait": 3, "cooldown_counter": 0})
    path = tmp_path / training.CHECKPOINT
    training.save_checkpoint(path, model, state, [np.float32(4.0), np.float32(8.0)])
    assert not list(tmp_path.glob("*.tmp"))

    restored = build(2)
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), restored.get_weights()))
    loaded, metric_values = training.load_checkpoint(path, restored)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(restored.optimizer.iterations.numpy()) == 17
    assert float(restored.optimizer.learning_rate.numpy()) == np.float32(2.5e-4)
    assert loaded.as_dict() == state.as_dict()
    assert [float(v) for v in metric_values] == [4.0, 8.0]

    other = models.build_model("mcu", (16, 16, 2), 10, "tess")
    other.compile(optimizer=keras.optimizers.Adam(1e-3))
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(training.ConfigError, match="does not match the model"):
        training.load_checkpoint(path, other)
