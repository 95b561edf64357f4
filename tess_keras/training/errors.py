"""Why a training run stopped early (besides a bad configuration, which is
``ConfigError``)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint.

    Args:
        run_dir: the run directory to pass to ``--resume``.
        epoch: the (1-based) epoch that was in progress.
        batch: batches of that epoch already done.
        signum: the signal (``signal.SIGINT`` or ``signal.SIGTERM``).
    """

    def __init__(self, run_dir, epoch, batch, signum=None):
        import signal

        super().__init__(f"interrupted at epoch {epoch}, batch {batch}")
        self.run_dir, self.epoch, self.batch = run_dir, epoch, batch
        self.signum = signum or signal.SIGINT


def diverged_message(out, value, epoch, step, epochs_done, which=""):
    """The ``TrainingDiverged`` message: what became non-finite, where, and
    which checkpoint is kept.

    Args:
        out: the run directory.
        value: the non-finite loss.
        epoch: the (1-based) epoch.
        step: the (1-based) batch.
        epochs_done: epochs finished before (the checkpoint kept).
        which: ``""`` for the training loss, ``"validation "`` for the
            validation loss.
    """
    kept = (
        f"the checkpoint of epoch {epochs_done} in {out} is kept"
        if epochs_done
        else "no epoch had finished, so there is no checkpoint to keep"
    )
    return (
        f"the {which}loss became {value} at epoch {epoch}, batch {step}; training stopped and {kept}. "
        "Start a new run with a lower --lr, or check the input data."
    )
