"""Turning Ctrl-C (SIGINT) and SIGTERM into a request the training loop honours between batches."""

import signal


class InterruptFlag:
    """Context manager: while active, SIGINT and SIGTERM set ``raised`` (and
    ``signum``) instead of raising ``KeyboardInterrupt`` or ending the
    process, so the loop can checkpoint and stop at the next batch boundary.
    Outside the main thread it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.raised = False
        self.signum = None
        self._previous = {}

    def __enter__(self):
        try:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave the signals alone
            self._previous = {}
        return self

    def _handle(self, signum, frame):
        self.raised = True
        self.signum = self.signum or signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
