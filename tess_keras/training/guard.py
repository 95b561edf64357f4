"""Stopping a run whose loss is no longer a number or is running away.

A NaN or infinite loss stops training at once. So does a finite loss that
has run away: more than ``RUNAWAY_FACTOR`` times the chance-level loss
``ln(num_classes)`` (the per-step cross-entropy of a network that knows
nothing). A learning network stays within a few times that level; a loss a
thousand times higher means the weights have blown up (``--lr 1e9`` reaches
1e11 in its first batches) and every further step only wastes time.
"""

import math

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
