"""The time a run has left, estimated so that it counts down smoothly and
does not jump when an epoch ends.

A run's time is training batches plus, once per epoch, the end-of-epoch
work (the validation pass, the checkpoint, metrics.csv). ``EtaClock``
measures both separately: the typical batch leaves out the run's first one
(which traces the graph), and the end-of-epoch time is measured from the
last batch to the epoch's end. The first epoch's end also traces the
validation step, so until a second one has been measured the end-of-epoch
time is estimated as a third of a training batch per validation batch (a
forward pass without the learning rule's updates), at most the first one.
"""

import time

FORWARD_SHARE = 1 / 3  # validation batch / training batch, before one is measured


class EtaClock:
    """Seconds left in a run, updated after every batch and every epoch.

    Args:
        epochs: the run's total epochs.
        steps: training batches per epoch.
        validation_batches: batches of the validation pass (0 without one).
        clock: a function returning seconds (``time.perf_counter``; tests
            pass their own).
    """

    def __init__(self, epochs, steps, validation_batches, clock=time.perf_counter):
        self.epochs = epochs
        self.steps = steps
        self.validation_batches = validation_batches
        self.clock = clock
        self.batch_seconds = []  # this process's batches after its first
        self.first_batch = None  # seconds of this process's first batch (tracing)
        self.end_seconds = []  # measured end-of-epoch work, one per epoch
        self.last = None

    def epoch_started(self):
        """Call when an epoch's first batch is about to run."""
        self.last = self.clock()

    def _batch(self):
        if self.batch_seconds:
            return sum(self.batch_seconds) / len(self.batch_seconds)
        return self.first_batch or 0.0

    def _epoch_end(self):
        typical = self.end_seconds[1:]
        if typical:
            return sum(typical) / len(typical)
        estimate = self.validation_batches * self._batch() * FORWARD_SHARE
        # The first epoch's end also traced the validation step: an upper bound.
        return min(self.end_seconds[0], estimate) if self.end_seconds else estimate

    def after_batch(self, epoch, step):
        """Seconds left after batch ``step`` (1-based) of epoch ``epoch``
        (0-based)."""
        now = self.clock()
        seconds, self.last = now - self.last, now
        if self.first_batch is None:
            self.first_batch = seconds
        else:
            self.batch_seconds.append(seconds)
        batch, end = self._batch(), self._epoch_end()
        later = self.epochs - epoch - 1
        return (self.steps - step) * batch + end + later * (self.steps * batch + end)

    def after_epoch(self, epoch):
        """Seconds left once epoch ``epoch`` (0-based) has ended, its
        validation and checkpoint included."""
        self.end_seconds.append(self.clock() - self.last)
        later = self.epochs - epoch - 1
        return later * (self.steps * self._batch() + self._epoch_end())
