"""What ``tess train`` would use of each dataset, counted from file lists and labels only.

``report(name, data_dir)`` lists the samples the way the loader does (the
same ``layout`` functions, labels from the HDF5 or CIFAR batches, the digits'
seeded split) and applies the same validation draw (``split.planned_indices``)
without decoding a recording or importing TensorFlow or tonic. A dataset
needs an entry in ``LABELERS`` (``fn(data_dir, seed, allow_incomplete)`` ->
``{"train": labels, "test": labels, "path": ...}`` plus optional
``groups``/``skipped``/``incomplete``) to be counted; without one its status
comes from ``catalog.scan`` and its counts are ``None``.
"""

import numpy as np

from tess_keras.data import catalog, layout
from tess_keras.data.base import DatasetError, count_classes, resolve_data_dir
from tess_keras.data.split import check_fraction, missing_classes, planned_indices


def _from_listing(listing, path):
    return {"train": listing.labels("train"), "test": listing.labels("test"), "groups": listing.groups_train,
            "skipped": dict(listing.skipped), "incomplete": list(listing.incomplete), "path": path}


def _digits(data_dir, seed, allow_incomplete):
    from tess_keras.data.digits import digits_labels, split_order

    labels = digits_labels()
    train, test = split_order(len(labels), seed)
    return {"train": labels[train], "test": labels[test], "path": "(scikit-learn)"}


def _digits_dvs(data_dir, seed, allow_incomplete):
    return {**_digits(data_dir, seed, allow_incomplete), "path": str(data_dir / catalog.CACHE_FOLDER)}


def _nmnist(data_dir, seed, allow_incomplete):
    return _from_listing(layout.nmnist_samples(data_dir, allow_incomplete), data_dir / "NMNIST")


def _cifar10_dvs(data_dir, seed, allow_incomplete):
    from tess_keras.data.events import cifar10_dvs_split

    listing = layout.cifar10_dvs_samples(data_dir, allow_incomplete)
    listing.train, listing.test = cifar10_dvs_split(listing.train)
    return _from_listing(listing, data_dir / "CIFAR10DVS")


def _dvs_gesture(data_dir, seed, allow_incomplete):
    return _from_listing(layout.dvs_gesture_samples(data_dir, allow_incomplete), data_dir / "DVSGesture")


def _shd(data_dir, seed, allow_incomplete):
    import h5py

    files = catalog.shd_files(data_dir)
    labels = {}
    for subset, path in files.items():
        try:
            with h5py.File(path, "r") as handle:
                labels[subset] = handle["labels"][:].astype(np.int64)
        except (OSError, KeyError, ValueError) as error:
            raise DatasetError(f"{path} is not a readable SHD HDF5 file with labels ({error}); it is truncated or "
                               "corrupt. Replace it with the original file.") from None
    return {**labels, "path": data_dir / "SHD"}


def _cifar(name):
    def labels(data_dir, seed, allow_incomplete):
        source = catalog.cifar_source(name, data_dir)
        train, test = catalog.read_cifar_batches(name, source)
        key = "labels" if name == "cifar10" else "fine_labels"
        return {"train": np.concatenate([batch[key] for batch in train]),
                "test": np.concatenate([batch[key] for batch in test]), "path": source}
    return labels


def _mnist(data_dir, seed, allow_incomplete):
    from tess_keras.data.mnist import mnist_file, read_mnist, split_indices

    path = mnist_file()
    _, found = read_mnist(path)
    train, test = split_indices(found, seed)
    return {"train": found[train], "test": found[test], "path": path}


LABELERS = {
    "digits": _digits, "digits-dvs": _digits_dvs, "nmnist": _nmnist, "cifar10-dvs": _cifar10_dvs,
    "dvs-gesture": _dvs_gesture, "shd": _shd, "cifar10": _cifar("cifar10"), "cifar100": _cifar("cifar100"),
    "mnist": _mnist, "mnist-dvs": _mnist,  # mnist-dvs records the mnist images with the same split
}


def _by_loading(name, data_dir, seed, allow_incomplete):
    from tess_keras.data import load_dataset

    splits = load_dataset(name, data_dir, seed=seed, validation_fraction=0, allow_incomplete=allow_incomplete)
    return {"train": splits.y_train, "test": splits.y_test, "groups": splits.groups_train,
            "skipped": splits.skipped, "incomplete": splits.incomplete, "path": data_dir}


def labels(name, data_dir=None, seed=0, allow_incomplete=False):
    """The loader's train/test labels of ``name`` (before the validation split).

    Returns:
        ``{"train": labels, "test": labels, "groups": per-train-sample groups or None,
        "skipped": {...}, "incomplete": [...], "path": where it is read}``.
    """
    data_dir = resolve_data_dir(data_dir)
    found = LABELERS[name](data_dir, seed, allow_incomplete)
    info = catalog.INFO[name]
    found.setdefault("groups", None)
    found.setdefault("skipped", {})
    found.setdefault("incomplete", [])
    absent = missing_classes({"train": found["train"], "test": found["test"]}, info.num_classes)
    if absent and not allow_incomplete:
        raise DatasetError(f"Dataset {name!r} is incomplete: {'; '.join(absent)}.")
    found["incomplete"] = list(found["incomplete"]) or absent
    return found


def _root_exists(name, data_dir):
    if name in catalog.CIFAR_SOURCES:
        return False  # cifar_source found nothing usable
    return (data_dir / catalog.EXPECTED_PATHS.get(name, "")).exists()


def report(name, data_dir=None, validation_fraction=None, seed=0):
    """Status, path and sample counts of one dataset, as ``tess train`` would use it.

    Args:
        name: a dataset of ``catalog.INFO``.
        data_dir: datasets folder.
        validation_fraction: ``None``: the dataset's default.
        seed: the run's seed (DVS Gesture's validation users depend on it).

    Returns:
        a JSON-ready dict: ``name``, ``status`` (``found``; ``incomplete``: classes
        missing, usable with ``--allow-incomplete``; ``missing``; ``invalid``: the
        files are there but break the layout), ``path``, ``detail``, ``time_steps``,
        ``num_classes``, ``validation_fraction``, ``samples`` and ``class_counts``
        per split (``None`` unless found or incomplete), ``skipped``, ``incomplete``.
    """
    info = catalog.INFO[name]
    data_dir = resolve_data_dir(data_dir)
    fraction = check_fraction(info.validation_fraction if validation_fraction is None else validation_fraction)
    out = {"name": name, "status": "found", "path": str(data_dir / catalog.EXPECTED_PATHS.get(name, "")),
           "detail": "", "time_steps": info.time_steps, "num_classes": info.num_classes,
           "validation_fraction": fraction, "samples": None, "class_counts": None, "skipped": {}, "incomplete": []}
    if name not in LABELERS:
        status = catalog.scan(name, data_dir)
        out.update(status="found" if status.found else "missing", path=str(status.path), detail=status.detail)
        return out
    try:
        found = labels(name, data_dir, seed)
    except DatasetError as error:
        out["detail"] = str(error)
        try:
            found = labels(name, data_dir, seed, allow_incomplete=True)
            out["status"] = "incomplete"
        except DatasetError:
            out["status"] = "invalid" if _root_exists(name, data_dir) else "missing"
            return out
    train, test = np.asarray(found["train"]), np.asarray(found["test"])
    plan = planned_indices(train, test, fraction, seed, found["groups"])
    chosen = {"train": train[plan["train"]], "validation": train[plan["validation"]], "test": test[plan["test"]]}
    out.update(
        path=str(found["path"]), skipped=found["skipped"], incomplete=found["incomplete"],
        samples={subset: int(len(y)) for subset, y in chosen.items()},
        class_counts={subset: count_classes(y, info.num_classes) for subset, y in chosen.items()},
    )
    return out
