"""From a loader's train/test arrays to the train/validation/test splits a run uses.

``load_dataset`` calls ``finalize``: it checks that every class is present,
carves the validation split out of the training data (seeded, stratified per
class; whole groups, e.g. DVS Gesture's users, when the training data has
groups), counts the recordings that bin to all-zero frames (more than 1 % of
the loader's train or test split is an error), and draws the seeded,
stratified ``limit_train`` / ``limit_test`` subsets. The index functions work
on labels alone, so ``tess datasets`` can count what a run
would use without decoding a single sample.
"""

import dataclasses

import numpy as np

from tess_keras.data.base import DatasetError, count_classes, take_rows

EMPTY_LIMIT = 0.01  # more than 1 % all-zero recordings in a split is an error
EMPTY_CHUNK = 256  # rows scanned at a time (the arrays may be memory-mapped)
NAMED_FILES = 5  # files named in the too-many-empty-recordings error
GROUP_ATTEMPTS = 100  # draws of validation groups tried until every class is on both sides
_VALIDATION, _LIMIT_TRAIN, _LIMIT_VAL, _LIMIT_TEST = range(4)  # independent random streams per purpose


def check_fraction(fraction):
    """``fraction`` as a float, or ``DatasetError`` unless ``0 <= fraction < 1``."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value < 1.0:
        raise DatasetError(f"The validation fraction must be at least 0 and below 1 (e.g. 0.1 for 10 % of the "
                           f"training data), not {fraction!r}. Use 0 for no validation split.")
    return value


def _per_class_share(count, fraction):
    """Validation samples of a class with ``count`` samples: at least 1 when it has 2 or more, never all."""
    if fraction <= 0 or count < 2:
        return 0
    return int(min(count - 1, max(1, np.floor(fraction * count + 0.5))))


def validation_indices(labels, fraction, seed=0, groups=None):
    """Split training indices into ``(train, validation)``, both sorted.

    Args:
        labels: training labels.
        fraction: share of the training data for validation, ``0 <= fraction < 1``.
        seed: draws which samples (or groups) are held out.
        groups: optional group of each sample (DVS Gesture: the user); then
            whole groups go to validation, ``round(fraction * groups)`` of
            them (at least one when there are two or more groups), drawn again
            (up to ``GROUP_ATTEMPTS`` times) until every class is on both sides.
            Without groups, each class gives ``round(fraction * n)`` samples
            (at least one when it has two or more, never all of them).
    """
    labels = np.asarray(labels).reshape(-1)
    everything = np.arange(len(labels))
    fraction = check_fraction(fraction)
    if fraction == 0 or len(labels) == 0:
        return everything, everything[:0]
    rng = np.random.default_rng([seed, _VALIDATION])
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        names = np.unique(groups)
        if len(names) < 2:
            return everything, everything[:0]
        n_val = int(min(len(names) - 1, max(1, np.floor(fraction * len(names) + 0.5))))
        classes = set(np.unique(labels).tolist())
        for _ in range(GROUP_ATTEMPTS):
            held = np.isin(groups, rng.permutation(names)[:n_val])
            if set(labels[held].tolist()) == classes == set(labels[~held].tolist()):
                break
        return everything[~held], everything[held]
    held = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = everything[labels == label]
        held[rng.permutation(members)[:_per_class_share(len(members), fraction)]] = True
    return everything[~held], everything[held]


def stratified_subset(labels, limit, seed=0, stream=_LIMIT_TRAIN):
    """Sorted indices of a seeded subset of at most ``limit`` samples, stratified per class.

    Every class present gets at least one sample when ``limit`` allows it;
    the rest is shared in proportion to the class sizes (largest remainder).
    ``limit`` 0 (or at least ``len(labels)``) keeps everything.
    """
    labels = np.asarray(labels).reshape(-1)
    if not limit or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, stream])
    classes, counts = np.unique(labels, return_counts=True)
    take = np.zeros(len(classes), np.int64)
    if limit < len(classes):
        take[rng.choice(len(classes), limit, replace=False)] = 1
    else:
        take[:] = 1
        spare = counts - 1
        quota = (limit - len(classes)) * spare / max(1, spare.sum())
        take += np.floor(quota).astype(np.int64)
        remainder = quota - np.floor(quota)
        for index in np.argsort(-remainder, kind="stable")[: limit - int(take.sum())]:
            take[index] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == label))[:n] for label, n in zip(classes, take)]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def planned_indices(labels_train, labels_test, fraction, seed=0, groups=None, limit_train=0, limit_test=0):
    """The indices ``finalize`` keeps: ``{"train": ..., "validation": ..., "test": ...}``.

    ``train`` and ``validation`` index the loader's training data, ``test`` its test data.
    """
    labels_train = np.asarray(labels_train).reshape(-1)
    labels_test = np.asarray(labels_test).reshape(-1)
    train, val = validation_indices(labels_train, fraction, seed, groups)
    train = train[stratified_subset(labels_train[train], limit_train, seed, _LIMIT_TRAIN)]
    val = val[stratified_subset(labels_train[val], limit_test, seed, _LIMIT_VAL)]
    test = stratified_subset(labels_test, limit_test, seed, _LIMIT_TEST)
    return {"train": train, "validation": val, "test": test}


def missing_classes(splits_labels, num_classes):
    """``["class 3 in train", ...]``: classes with no sample in a split (``{split: labels}``)."""
    missing = []
    for subset, labels in splits_labels.items():
        absent = [c for c, n in enumerate(count_classes(labels, num_classes)) if n == 0]
        if absent:
            missing.append(f"class(es) {', '.join(map(str, absent))} absent from {subset}")
    return missing


def empty_mask(x):
    """Boolean per sample: its frames (or image) are all zero. Scans ``EMPTY_CHUNK`` rows at a time."""
    mask = np.zeros(len(x), bool)
    for start in range(0, len(x), EMPTY_CHUNK):
        block = np.asarray(x[start:start + EMPTY_CHUNK])
        mask[start:start + len(block)] = ~block.reshape(len(block), -1).any(axis=1)
    return mask


def _check_empty(name, subset, mask, ids, time_steps):
    count = int(mask.sum())
    if len(mask) and count > EMPTY_LIMIT * len(mask):
        where = np.flatnonzero(mask)[:NAMED_FILES]
        named = ", ".join(str(ids[i]) for i in where) if ids is not None else ", ".join(f"sample {i}" for i in where)
        raise DatasetError(
            f"Dataset {name!r}: {count} of {len(mask)} {subset} recordings ({100 * count / len(mask):.1f} %) bin to "
            f"all-zero frames, more than the {100 * EMPTY_LIMIT:.0f} % allowed; the first: {named}. Likely causes: the "
            f"recordings are shorter than the clip the {time_steps} time bins cover, or their timestamps are in "
            "another unit than the loader expects (microseconds; milliseconds for DVS Gesture's .npy files). "
            "Replace those files with the originals, or remove them.")
    return count


def finalize(splits, num_classes, fraction, seed=0, allow_incomplete=False, limit_train=0, limit_test=0):
    """Complete a loader's ``DatasetSplits``: completeness, validation, empty recordings, limits.

    Args:
        splits: the loader's ``DatasetSplits`` (train and test; a validation
            split it already set is kept).
        num_classes: classes the dataset must have.
        fraction: validation share of the training data (``0 <= fraction < 1``).
        seed: seed of the validation draw and of the limited subsets.
        allow_incomplete: record absent classes in ``splits.incomplete``
            instead of raising ``DatasetError``.
        limit_train: keep a stratified subset of at most this many training samples (0: all).
        limit_test: the same for validation and for test, each.

    Returns:
        a new ``DatasetSplits``; the inputs are not modified.
    """
    fraction = check_fraction(fraction)
    has_val = len(splits.y_val) > 0
    absent = missing_classes({"train": np.concatenate([np.asarray(splits.y_train), np.asarray(splits.y_val)]),
                              "test": splits.y_test}, num_classes)
    incomplete = list(splits.incomplete)
    if absent:
        if not allow_incomplete:
            raise DatasetError(
                f"Dataset {splits.name!r} is incomplete: {'; '.join(absent)}. A dataset with a class missing is not "
                "the published dataset (a folder or file was deleted or never extracted); restore the files, or pass "
                "--allow-incomplete (allow_incomplete=True) to train on it anyway, recorded in the run's summary.")
        if not incomplete:  # a loader that checks its layout has named the missing folders already
            incomplete += absent
    y_train, y_val, y_test = (np.asarray(y) for y in (splits.y_train, splits.y_val, splits.y_test))
    empty = {"train": empty_mask(splits.x_train), "test": empty_mask(splits.x_test)}
    if has_val:  # the loader's own validation split
        empty["validation"] = empty_mask(splits.x_val)
        whole = {"train": np.arange(len(y_train)), "validation": np.arange(len(y_val))}
        sources = {"train": "train", "validation": "validation", "test": "test"}
    else:
        train, val = validation_indices(y_train, fraction, seed, splits.groups_train)
        whole = {"train": train, "validation": val}
        sources = {"train": "train", "validation": "train", "test": "test"}
    whole["test"] = np.arange(len(y_test))
    arrays = {"train": (splits.x_train, y_train, splits.ids_train), "test": (splits.x_test, y_test, splits.ids_test),
              "validation": (splits.x_val, y_val, splits.ids_val)}
    for subset, mask in empty.items():  # the 1 % rule applies to the loader's splits, before validation and limits
        _check_empty(splits.name, subset, mask, arrays[subset][2], splits.time_steps)
    limits = {"train": (limit_train, _LIMIT_TRAIN), "validation": (limit_test, _LIMIT_VAL),
              "test": (limit_test, _LIMIT_TEST)}
    out, counts = {}, {}
    for subset, index in whole.items():
        x, y, ids = arrays[sources[subset]]
        limit, stream = limits[subset]
        index = index[stratified_subset(y[index], limit, seed, stream)]
        limited = len(index) < len(whole[subset])
        rows = take_rows(x, index)
        out[subset] = (np.asarray(rows) if limited else rows, y[index], None if ids is None else np.asarray(ids)[index])
        counts[subset] = int(empty[sources[subset]][index].sum())
        if subset == "train":
            groups = None if splits.groups_train is None else np.asarray(splits.groups_train)[index]
    (x_train, y_train, ids_train), (x_val, y_val, ids_val), (x_test, y_test, ids_test) = (
        out[s] for s in ("train", "validation", "test"))
    return dataclasses.replace(
        splits, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
        ids_train=ids_train, ids_val=ids_val, ids_test=ids_test, groups_train=groups, incomplete=incomplete,
        empty=counts,
        skipped=dict(splits.skipped),
    )
