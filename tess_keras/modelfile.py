"""Loading a run's ``model.keras`` with errors that say what is wrong.

Keras answers a truncated, empty or non-zip file with "File not found", and
happily loads a plain Keras model that the CLI then cannot use (it has no
spiking layers). ``load_spiking_model`` checks the file first and names the
problem: missing, a directory, damaged (not a complete zip archive), not a
Keras model, a model of another class, or weights that do not load.
"""

import json
import zipfile
from pathlib import Path


class ModelFileError(ValueError):
    """``model.keras`` is missing, damaged or not a tess-keras model; the message says which and what to do."""


def _damaged(path, why, fix):
    return ModelFileError(f"{path} is damaged ({why}); it cannot be loaded. {fix}")


def check_model_file(path, fix=""):
    """The class name in ``path``'s Keras archive, after checking that it is one.

    Args:
        path: a ``.keras`` file.
        fix: what the user should do about a bad file (appended to messages).

    Raises:
        ModelFileError: the file is missing, a directory, not a complete zip
            archive, or has no Keras model configuration.
    """
    path = Path(path)
    fix = fix or "Write it again (e.g. `tess train --resume RUN_DIR` rewrites a finished run's model.keras)."
    if not path.exists():
        raise ModelFileError(f"{path} does not exist. {fix}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a .keras model file. {fix}")
    try:
        size = path.stat().st_size
        if size == 0:
            raise _damaged(path, "the file is empty", fix)
        if not zipfile.is_zipfile(path):
            raise _damaged(path, f"{size} bytes that are not a complete .keras zip archive, e.g. a truncated copy", fix)
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise _damaged(path, f"its member {bad} fails its checksum", fix)
            names = set(archive.namelist())
            if "config.json" not in names:
                raise _damaged(path, "a zip archive without the config.json of a Keras model", fix)
            config = json.loads(archive.read("config.json").decode())
    except ModelFileError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError, UnicodeDecodeError, EOFError) as error:
        raise _damaged(path, f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}", fix) from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise _damaged(path, "its config.json describes no Keras object", fix)
    return config["class_name"]


def load_spiking_model(path, fix=""):
    """A ``SpikingSequential`` loaded from ``path`` (a run's ``model.keras``).

    Args:
        path: the ``.keras`` file.
        fix: what the user should do about a bad file (appended to messages).

    Returns:
        The model.

    Raises:
        ModelFileError: see ``check_model_file``; the file holds another kind
            of Keras model; or Keras cannot rebuild it.
    """
    import keras

    import tess_keras.layers  # noqa: F401  (these register the saved classes)
    import tess_keras.models  # noqa: F401
    import tess_keras.rules  # noqa: F401
    from tess_keras.models import SpikingSequential

    path = Path(path)
    fix = fix or "Write it again (e.g. `tess train --resume RUN_DIR` rewrites a finished run's model.keras)."
    class_name = check_model_file(path, fix)
    not_ours = (
        f"{path} holds a plain Keras {class_name} model, not a tess-keras SpikingSequential (spiking layers "
        "trained with a learning rule); pass the model.keras that `tess train` wrote, or build the network from "
        "tess_keras.layers and tess_keras.models.SpikingSequential."
    )
    if class_name != "SpikingSequential":
        raise ModelFileError(not_ours)
    try:
        model = keras.saving.load_model(path)
    except Exception as error:  # Keras's many load failures: unknown layer, bad weights file, shapes
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise ModelFileError(f"{path} cannot be loaded ({type(error).__name__}: {first}). {fix}") from None
    if not isinstance(model, SpikingSequential):
        raise ModelFileError(not_ours)
    return model
