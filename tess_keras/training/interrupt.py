"""Turning Ctrl-C into a request the training loop honours between batches."""

import signal


class InterruptFlag:
    """Context manager: while active, SIGINT sets ``raised`` instead of
    raising ``KeyboardInterrupt``, so the loop can checkpoint and stop at
    the next batch boundary. Outside the main thread it does nothing."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
