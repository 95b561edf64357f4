"""Stopping a run whose loss is no longer a number or is running away.

A NaN or infinite loss stops training at once. So does a finite loss that
has run away: more than ``RUNAWAY_FACTOR`` times the chance-level loss
``ln(num_classes)`` (the per-step cross-entropy of a network that knows
nothing). A learning network stays within a few times that level; a loss a
thousand times higher means the weights have blown up (``--lr 1e9`` reaches
1e11 in its first batches) and every further step only wastes time.

A write that fails (disk full, read-only, over quota) while a checkpoint,
``metrics.csv``, a TensorBoard file or ``model.keras`` is written stops the
run the same way: one paragraph, the previous checkpoint kept, the
temporaries of the failed write removed.
"""

import errno
import math
from pathlib import Path

from tess_keras.training.errors import TrainingDiverged, diverged_message

RUNAWAY_FACTOR = 1000.0


def loss_limit(num_classes):
    """The largest loss a run may report before it counts as running away."""
    return RUNAWAY_FACTOR * max(math.log(max(num_classes, 2)), 1.0)


def check_loss(value, num_classes, out, epoch, step, epochs_done, which=""):
    """Raise ``TrainingDiverged`` (with the message of ``diverged_message``)
    when ``value`` is NaN, infinite or above ``loss_limit(num_classes)``.

    Args:
        value: the running loss.
        num_classes: classes of the dataset.
        out: the run directory.
        epoch: the (1-based) epoch.
        step: the (1-based) batch.
        epochs_done: epochs finished before (their checkpoint is kept).
        which: ``""`` for the training loss, ``"validation "`` for the validation loss.
    """
    value = float(value)
    if not math.isfinite(value):
        raise TrainingDiverged(diverged_message(out, value, epoch, step, epochs_done, which))
    if value > loss_limit(num_classes):
        chance = math.log(max(num_classes, 2))
        described = (
            f"{value:.4g}, more than {RUNAWAY_FACTOR:g} times the chance-level loss ln({num_classes}) = {chance:.3g} "
            "(it is running away),"
        )
        raise TrainingDiverged(diverged_message(out, described, epoch, step, epochs_done, which))


# -- failed writes (disk full, read-only, quota) -------------------------------------

WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EFBIG}
# How TensorFlow's file system layer words the same failures (its OpErrors carry no errno).
WRITE_PHRASES = ("No space left on device", "Disk quota exceeded", "Read-only file system", "Permission denied",
                 "File too large", "Input/output error")


def write_failure(error):
    """Why ``error`` is a failed write to disk (``strerror``-like text), or None if it is something else.

    Args:
        error: an exception raised while training (``OSError``, TensorFlow's
            ``OpError`` from a checkpoint or summary write, or anything else).
    """
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        return error.strerror or str(error)
    text = str(error)
    for phrase in WRITE_PHRASES:
        if phrase in text:
            return phrase
    return None


def remove_temporaries(out):
    """Remove what an interrupted write leaves in the run directory ``out``:
    ``checkpoint.tmp/`` and ``*.tmp`` / ``*.tmp.keras`` files. The previous
    checkpoint (``checkpoint/``, or ``checkpoint.old/`` when it is the only
    complete one) is never touched.

    Returns:
        The names removed.
    """
    import shutil

    out = Path(out)
    removed = []
    if not out.is_dir():
        return removed
    for path in out.iterdir():
        if path.name == "checkpoint.tmp" and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and (path.name.endswith(".tmp") or path.name.endswith(".tmp.keras")):
            try:
                path.unlink()
            except OSError:
                continue
        else:
            continue
        removed.append(path.name)
    return removed


def write_failure_message(out, reason, epochs_done):
    """The one paragraph for a run stopped by a failed write.

    Args:
        out: the run directory.
        reason: from ``write_failure``.
        epochs_done: epochs of the checkpoint kept (``None``: no checkpoint yet).
    """
    kept = (
        f"the checkpoint of epoch {epochs_done} is intact"
        if epochs_done
        else "no checkpoint had been written yet"
    )
    return (
        f"cannot write to the run directory {out}: {reason}. Training stopped; {kept} and no partial files were "
        f"left. Free space on that disk (or make it writable), then continue with `tess train --resume {out}`."
    )
