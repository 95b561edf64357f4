"""Which files are samples, and their labels, from the published folder layouts.

Labels come only from the layout the datasets are published in, never from a
guess:

- N-MNIST: ``NMNIST/{Train,Test}/<digit>/*.bin`` with ``<digit>`` exactly one of
  ``0`` ... ``9``.
- CIFAR10-DVS: ``CIFAR10DVS/<class>/*.aedat4`` with ``<class>`` one of the ten
  class names.
- DVS Gesture: ``DVSGesture/{ibmGestureTrain,ibmGestureTest}/userNN_<lighting>/<label>.npy``
  with ``<label>`` 0-10; the user ``NN`` is the sample's group.

Samples are the files directly in a class (or user) folder. A folder inside
it (a nested copy would count recordings twice), a folder with an unknown
name, or a sample file outside a class folder is a ``DatasetError`` naming it.
Files that cannot be samples (``.DS_Store``, ``notes.txt``, the downloaded
zips) and hidden or ``__MACOSX`` folders are ignored and counted in
``SampleList.skipped``. A missing class is a ``DatasetError`` naming it and
the expected layout, unless ``allow_incomplete`` (then it is recorded in
``SampleList.incomplete``).
"""

import dataclasses
import os
import re
from pathlib import Path

from tess_keras.data.base import DatasetError

IGNORED_FOLDERS = ("__MACOSX",)  # macOS zip metadata
NMNIST_DIGITS = tuple(str(d) for d in range(10))
DVS_GESTURE_USER = re.compile(r"user(\d+)_\w+")
DVS_GESTURE_LABEL = re.compile(r"(?:[0-9]|10)")
DVS_GESTURE_PUBLISHED_GAPS = 1  # tonic's archives hold 1341 of the 1342 recordings (122 trials x 11 gestures)


@dataclasses.dataclass
class SampleList:
    """The samples of a dataset as its folders say, before any decoding.

    Attributes:
        data_dir: the datasets folder; ``ids`` are relative to it.
        train, test: ``[(path, label)]`` in natural file order.
        groups_train: group of each training sample (DVS Gesture: user number) or ``None``.
        skipped: ``{"non_sample_files": n, "ignored_folders": n}`` (only non-zero entries).
        incomplete: what is missing, when ``allow_incomplete`` (or published gaps).
    """

    data_dir: Path
    train: list
    test: list
    groups_train: list | None = None
    skipped: dict = dataclasses.field(default_factory=dict)
    incomplete: list = dataclasses.field(default_factory=list)

    def labels(self, subset):
        """Labels of ``"train"`` or ``"test"``."""
        return [label for _, label in getattr(self, subset)]

    def ids(self, subset):
        """Paths of ``"train"`` or ``"test"`` relative to ``data_dir`` (POSIX strings)."""
        return [Path(os.path.relpath(path, self.data_dir)).as_posix() for path, _ in getattr(self, subset)]

    def files(self):
        """Every sample file, train then test."""
        return [path for path, _ in self.train + self.test]

    def skip(self, key):
        self.skipped[key] = self.skipped.get(key, 0) + 1


def natural_key(path):
    """Sort ``x_2`` before ``x_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _entries(folder, listing):
    """``(folders, files)`` directly in ``folder``, natural order; hidden and ``__MACOSX`` entries skipped."""
    folders, files = [], []
    for entry in sorted(Path(folder).iterdir(), key=natural_key):
        if entry.name.startswith(".") or entry.name in IGNORED_FOLDERS:
            listing.skip("ignored_folders" if entry.is_dir() else "non_sample_files")
        elif entry.is_dir():
            folders.append(entry)
        else:
            files.append(entry)
    return folders, files


def class_files(folder, suffix, listing, dataset):
    """Sample files (ending in ``suffix``) directly in the class folder ``folder``.

    Other files are skipped and counted; a sub-folder is a ``DatasetError``.
    """
    folders, files = _entries(folder, listing)
    if folders:
        raise DatasetError(
            f"Dataset {dataset!r}: {folders[0]} is a folder inside the class folder {folder}. Samples must be files "
            f"directly in {folder}; a nested folder (often a second copy from unzipping twice) would count recordings "
            "twice or give them the wrong split. Move its files up one level, or remove it.")
    samples = []
    for path in files:
        if path.name.lower().endswith(suffix):
            samples.append(path)
        else:
            listing.skip("non_sample_files")
    return samples


def _class_folders(base, allowed, suffix, listing, dataset, what):
    """``{name: folder}`` of the class folders directly in ``base``; anything else is an error or skipped."""
    folders, files = _entries(base, listing)
    for path in files:
        if path.name.lower().endswith(suffix):
            raise DatasetError(
                f"Dataset {dataset!r}: {path} is a sample outside any class folder, so its label is unknown. "
                f"Samples belong in {base}/<{what}>/; move it into its class folder or remove it.")
        listing.skip("non_sample_files")
    unknown = [path for path in folders if path.name not in allowed]
    if unknown:
        raise DatasetError(
            f"Dataset {dataset!r}: {unknown[0]} is not a class folder; the class folders in {base} are named exactly "
            f"{', '.join(allowed)}. A folder with another name would give its files a wrong label (or none). "
            "Rename or remove it.")
    return {path.name: path for path in folders}


def _missing(listing, allow_incomplete, message, entries):
    if not entries:
        return
    if not allow_incomplete:
        raise DatasetError(message)
    listing.incomplete.extend(entries)


def _require_folder(name, data_dir, folder, what):
    from tess_keras.data.catalog import missing_message

    if not folder.is_dir():
        raise DatasetError(missing_message(name, data_dir, f"no {what} files under {folder}"))


def _per_class(name, data_dir, base, classes, suffix, listing, allow_incomplete, what):
    """``[(path, label)]`` of a folder of class folders, ``classes[label]`` being the folder name."""
    from tess_keras.data.catalog import missing_message

    folders = _class_folders(base, classes, suffix, listing, name, what)
    samples, absent = [], []
    for label, class_name in enumerate(classes):
        files = class_files(folders[class_name], suffix, listing, name) if class_name in folders else []
        if not files:
            absent.append(class_name)
        samples += [(path, label) for path in files]
    relative = Path(os.path.relpath(base, data_dir)).as_posix()
    _missing(listing, allow_incomplete, missing_message(
        name, data_dir, f"no {suffix} files for class(es) {', '.join(absent)} under {base} (a missing class is not "
        "a smaller dataset; pass --allow-incomplete to train without it)"),
        [f"{relative}/{class_name}/: no {suffix} files" for class_name in absent])
    return samples


def nmnist_samples(data_dir, allow_incomplete=False):
    """The N-MNIST samples: ``.bin`` files in ``Train/<digit>/`` and ``Test/<digit>/``."""
    root = Path(data_dir) / "NMNIST"
    listing = SampleList(Path(data_dir), [], [])
    folders = {"train": root / "Train", "test": root / "Test"}
    for folder in folders.values():
        _require_folder("nmnist", data_dir, folder, "<digit>/*.bin")
    for subset, folder in folders.items():
        setattr(listing, subset, _per_class("nmnist", data_dir, folder, NMNIST_DIGITS, ".bin", listing,
                                            allow_incomplete, "digit"))
    return listing


def cifar10_dvs_samples(data_dir, allow_incomplete=False):
    """The CIFAR10-DVS recordings: ``.aedat4`` files in ``CIFAR10DVS/<class>/`` (all in ``train``; the
    loader makes the 90/10 split)."""
    from tess_keras.data.catalog import CIFAR10_DVS_CLASSES, missing_message

    root = Path(data_dir) / "CIFAR10DVS"
    if not root.is_dir():
        raise DatasetError(missing_message("cifar10-dvs", data_dir, f"folder {root} does not exist"))
    listing = SampleList(Path(data_dir), [], [])
    listing.train = _per_class("cifar10-dvs", data_dir, root, CIFAR10_DVS_CLASSES, ".aedat4", listing,
                               allow_incomplete, "class")
    return listing


def dvs_gesture_samples(data_dir, allow_incomplete=False):
    """The DVS Gesture samples: ``<label>.npy`` files in ``userNN_<lighting>/`` folders, grouped by user.

    Every trial folder should hold the 11 gestures; tonic's archives lack one
    recording in all, so up to ``DVS_GESTURE_PUBLISHED_GAPS`` missing label
    files are accepted (and listed in ``incomplete``); more, or a gesture
    absent from a whole split, is a ``DatasetError`` unless ``allow_incomplete``.
    """
    from tess_keras.data.catalog import DVS_GESTURE_CLASSES, missing_message

    root = Path(data_dir) / "DVSGesture"
    listing = SampleList(Path(data_dir), [], [], groups_train=[])
    folders = {"train": root / "ibmGestureTrain", "test": root / "ibmGestureTest"}
    for folder in folders.values():
        _require_folder("dvs-gesture", data_dir, folder, "userNN_<lighting>/<label>.npy")
    gaps, absent = [], []
    for subset, base in folders.items():
        trials, files = _entries(base, listing)
        for path in files:
            if path.suffix.lower() == ".npy":
                raise DatasetError(f"Dataset 'dvs-gesture': {path} lies outside any userNN_<lighting> folder, so its "
                                   f"user is unknown; move it into its trial folder under {base}, or remove it.")
            listing.skip("non_sample_files")
        samples = []
        for trial in trials:
            match = DVS_GESTURE_USER.fullmatch(trial.name)
            if not match:
                raise DatasetError(f"Dataset 'dvs-gesture': {trial} is not a trial folder; the folders in {base} "
                                   "are named userNN_<lighting> (e.g. user01_fluorescent). Rename or remove it.")
            found = {}
            for path in class_files(trial, ".npy", listing, "dvs-gesture"):
                if not DVS_GESTURE_LABEL.fullmatch(path.stem):
                    raise DatasetError(f"{path}: DVS Gesture samples are named <label>.npy with <label> 0-10; "
                                       "this file does not belong to tonic's DVS Gesture archives.")
                found[int(path.stem)] = path
            relative = Path(os.path.relpath(trial, data_dir)).as_posix()
            gaps += [f"{relative}/{label}.npy" for label in range(DVS_GESTURE_CLASSES) if label not in found]
            samples += [(found[label], label, int(match.group(1))) for label in sorted(found)]
        present = {label for _, label, _ in samples}
        absent += [f"gesture {label} in {base.name}" for label in range(DVS_GESTURE_CLASSES) if label not in present]
        setattr(listing, subset, [(path, label) for path, label, _ in samples])
        if subset == "train":
            listing.groups_train = [user for _, _, user in samples]
    if len(gaps) <= DVS_GESTURE_PUBLISHED_GAPS and not absent:
        listing.incomplete += [f"{gap} missing (as published)" for gap in gaps]
        return listing
    what = (f"{len(gaps)} trial folder label file(s) missing, e.g. {', '.join(gaps[:5])}"
            + (f"; no sample of {', '.join(absent)}" if absent else ""))
    _missing(listing, allow_incomplete, missing_message(
        "dvs-gesture", data_dir, f"{what} (every userNN_<lighting> folder holds 0.npy to 10.npy; the published "
        f"archives lack {DVS_GESTURE_PUBLISHED_GAPS} recording in all); pass --allow-incomplete to train anyway"),
        [f"{gap} missing" for gap in gaps] + [f"no sample of {a}" for a in absent])
    return listing
