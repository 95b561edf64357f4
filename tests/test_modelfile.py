"""A run's model.keras: damaged, foreign or unwritable files end in one
paragraph (tess_keras.modelfile, tess eval, tess export)."""

import os
import shutil
import subprocess
import zipfile

import pytest
from typer.testing import CliRunner

from tess_keras.cli.main import app
from tess_keras.modelfile import ModelFileError, check_model_file, load_spiking_model

runner = CliRunner()
TINY = ["--dataset", "digits", "--epochs", "1", "--batch-size", "16", "--limit-train", "48", "--limit-test", "32"]


def text_of(output):
    return " ".join(output.split())


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    import keras

    path = tmp_path_factory.mktemp("plain") / "model.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = runner.invoke(app, ["train", *TINY, "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return out


def test_bad_files_are_named(tmp_path):
    cases = {
        "missing.keras": (None, "does not exist"),
        "folder.keras": ("dir", "is a directory"),
        "empty.keras": (b"", "the file is empty"),
        "garbage.keras": (b"not a zip at all", "not a complete .keras zip archive"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        if content == "dir":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        with pytest.raises(ModelFileError, match=words):
            check_model_file(path, "Fix it.")
    path = tmp_path / "nozip-config.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(ModelFileError, match="without the config.json of a Keras model"):
        check_model_file(path)


def test_plain_keras_model_is_refused(plain_model):
    assert check_model_file(plain_model) == "Sequential"
    with pytest.raises(ModelFileError, match="holds a plain Keras Sequential model, not a tess-keras SpikingSequential"):
        load_spiking_model(plain_model)


@pytest.mark.slow
def test_truncated_and_damaged_models(run_dir, tmp_path):
    model = run_dir / "model.keras"
    assert type(load_spiking_model(model)).__name__ == "SpikingSequential"
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"is damaged \(\d+ bytes that are not a complete .keras zip archive"):
        load_spiking_model(truncated)
    bad_weights = tmp_path / "bad-weights.keras"
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(bad_weights, "w") as target:
        for name in source.namelist():
            target.writestr(name, b"garbage" if name.endswith(".h5") else source.read(name))
    with pytest.raises(ModelFileError, match="cannot be loaded"):
        load_spiking_model(bad_weights)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["eval", "export"])
@pytest.mark.parametrize("damage", ["truncated", "plain"])
def test_cli_on_a_bad_model_file(run_dir, plain_model, tmp_path, command, damage):
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    model = broken / "model.keras"
    if damage == "truncated":
        model.write_bytes(model.read_bytes()[:1000])
    else:
        shutil.copy(plain_model, model)
    args = ["eval", str(broken)] if command == "eval" else ["export", str(broken), "--target", "host", "--out",
                                                             str(tmp_path / "export")]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    output = text_of(result.output)
    assert result.exit_code == 2, output
    assert isinstance(result.exception, SystemExit), result.exception
    assert str(model) in output
    assert ("is damaged" if damage == "truncated" else "holds a plain Keras Sequential model") in output
    assert not (tmp_path / "export").exists()


def _read_only_copy(run_dir, tmp_path):
    """A copy of the run on a read-only file system (root: a tmpfs remounted
    read-only) or in a directory without write permission (other users).
    Returns (path, cleanup) or None."""
    if os.geteuid() != 0:
        target = tmp_path / "ro" / "run"
        shutil.copytree(run_dir, target)
        for path in [target, *target.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return target, lambda: [p.chmod(p.stat().st_mode | 0o200) for p in [target, *target.rglob("*")]]
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode:
        return None
    shutil.copytree(run_dir, mount / "run")
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    return mount / "run", lambda: subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_eval_on_a_read_only_run_directory(run_dir, tmp_path):
    made = _read_only_copy(run_dir, tmp_path)
    if made is None:
        pytest.skip("cannot make a read-only directory here")
    read_only, cleanup = made
    try:
        before = sorted(p.name for p in read_only.iterdir())
        result = runner.invoke(app, ["eval", str(read_only)], env={"COLUMNS": "200"})
        after = sorted(p.name for p in read_only.iterdir())
    finally:
        cleanup()
    output = text_of(result.output)
    assert result.exit_code == 2, output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "accuracy" in output and "Per-class accuracy" in output  # computed and printed
    assert f"{read_only / 'confusion.png'} could not be written" in output
    assert f"{read_only / 'eval.json'} could not be written" in output
    assert "wrote " not in output
    assert after == before
