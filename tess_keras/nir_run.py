"""``tess import``: a NIR file as a run directory that ``tess eval``, ``tess train --resume``
and ``tess export`` accept.

The run directory holds what ``tess train`` writes: ``config.json`` (a
``TrainConfig`` with ``model="imported"``: resuming loads ``model.keras``
instead of building a named network), ``model.keras`` and ``summary.json``
(the validation and test accuracy of the imported weights with the same
fields as a trained run's: ``selected_epoch`` 0, ``class_counts``; and the
conversions made).
"""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np


def import_nir(
    nir_file,
    out,
    dataset="digits",
    time_steps=0,
    lif_reset="zero",
    dt=None,
    rule="tess",
    lr=1e-3,
    alpha_post=1.0,
    batch_size=32,
    seed=0,
    data_dir="",
):
    """Import ``nir_file`` into the new run directory ``out``.

    Args:
        nir_file: a ``.nir`` file (``nir.write``'s HDF5).
        out: the run directory to create (must not hold a run).
        dataset, time_steps, data_dir, seed: the data the run evaluates and
            fine-tunes on (``time_steps`` 0: the dataset's default).
        lif_reset: how NIR ``LIF`` nodes reset (``nir_import.LIF_RESETS``).
        dt: the Euler step the file's time constants assume (None: the
            file's ``metadata["dt"]``, else 1e-4 as snnTorch writes).
        rule, lr, alpha_post, batch_size: the fine-tuning settings saved in
            ``config.json``.

    Returns:
        The summary dict (also in ``out/summary.json``).

    Raises:
        tess_keras.nir_import.NIRImportError: the file or a node cannot be imported.
        tess_keras.training.ConfigError: bad options or an unusable ``out``.
        tess_keras.data.DatasetError: the dataset is missing.
    """
    import keras
    import nir

    from tess_keras import data, nir_import, training

    nir_file = Path(nir_file)
    if not nir_file.is_file():
        raise nir_import.NIRImportError(f"{nir_file} does not exist or is not a file; pass a .nir file.")
    try:
        graph = nir.read(str(nir_file))
    except Exception as error:  # h5py/KeyError/...: not a NIR file
        raise nir_import.NIRImportError(
            f"cannot read {nir_file} as a NIR file ({type(error).__name__}: {str(error)[:200]}); "
            "write it with nir.write (snnTorch: nir.write(path, export_to_nir(net, sample)))."
        ) from None
    config = training.TrainConfig(dataset=dataset, rule=rule, model="imported", epochs=1, batch_size=batch_size,
                                  time_steps=time_steps, lr=lr, alpha_post=alpha_post, seed=seed, data_dir=data_dir,
                                  out=str(out))
    training.validate(config)
    model, notes = nir_import.build_model(graph, lif_reset=lif_reset, dt=dt,
                                          rule=training.make_rule(rule, alpha_post))
    # The validation split a fine-tuning `tess train --resume` would use: saved with the run.
    config = dataclasses.replace(config, validation_fraction=data.INFO[dataset].validation_fraction)
    splits = data.load_dataset(dataset, data_dir or None, time_steps or None, seed,
                               validation_fraction=config.validation_fraction)
    model_shape = tuple(int(s) for s in model.step_input_shapes[model.blocks[0].name][1:])
    if tuple(splits.input_shape) != model_shape or splits.num_classes != model.num_classes:
        raise nir_import.NIRImportError(
            f"the network takes {model_shape} inputs with {model.num_classes} classes but dataset {dataset!r} has "
            f"{tuple(splits.input_shape)} with {splits.num_classes}; pass the --dataset it was trained for."
        )
    out = training.prepare_run_dir(out, False, holds_run=("model.keras", "summary.json"))
    config = dataclasses.replace(config, time_steps=splits.time_steps)
    model.compile(optimizer=keras.optimizers.Adam(lr))
    model.optimizer.build(model.trainable_variables)  # saved like a trained run's
    result = model.evaluate(data.make_tf_dataset(splits, "test", batch_size), verbose=0, return_dict=True)
    validation = (model.evaluate(data.make_tf_dataset(splits, "validation", batch_size), verbose=0, return_dict=True)
                  if len(splits.y_val) else None)
    tmp = out / "model.tmp.keras"
    model.save(tmp)
    os.replace(tmp, out / "model.keras")
    training.save_config(out, config)
    summary = {
        **dataclasses.asdict(config),
        "validation_accuracy": None if validation is None else float(validation["accuracy"]),
        "validation_loss": None if validation is None else float(validation["loss"]),
        "test_accuracy": float(result["accuracy"]),
        "test_loss": float(result["loss"]),
        "selected_epoch": 0,
        "selection": "the imported weights, unchanged (no training epoch); the test split evaluated once",
        "class_counts": splits.class_counts(),
        "skipped": dict(splits.skipped),
        "empty": dict(splits.empty),
        "incomplete": list(splits.incomplete),
        "parameters": int(model.count_params()),
        "train_seconds": 0.0,
        "weights_sha256": training.weights_fingerprint(model),
        "imported_from": str(nir_file),
        "lif_reset": lif_reset,
        "dt": float(dt) if dt is not None else None,
        "layers": [{"name": b.name, "type": type(b).__name__, "reset": getattr(b, "reset", None)}
                   for b in model.blocks],
        "notes": notes,
    }
    training.atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def predictions(run_dir_or_model, x, batch_size=128):
    """argmax of ``sum_t z[t]`` for ``x`` ``[N, T, ...]`` (a run directory or a model)."""
    import keras

    import tess_keras.models  # noqa: F401  (registers the custom objects)
    import tess_keras.rules  # noqa: F401

    model = run_dir_or_model
    if isinstance(model, (str, Path)):
        model = keras.saving.load_model(Path(model) / "model.keras")
    x = np.asarray(x, np.float32)
    return np.concatenate([np.argmax(np.asarray(model(x[i : i + batch_size])), axis=-1)
                           for i in range(0, len(x), batch_size)])
