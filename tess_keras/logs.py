"""How chatty TensorFlow may be: quiet in normal use, everything with
``tess --verbose`` (or ``TESS_VERBOSE=1``).

Quiet means: TensorFlow's C++ log below errors is dropped
(``TF_CPP_MIN_LOG_LEVEL=2``, set before TensorFlow is imported), absl's
Python warnings are dropped, and native code that prints straight to the
terminal (the TFLite converter's ``fully_quantize: 0, ...`` line) runs with
its output captured (``native_output_quieted``); what it printed is shown
only if the block fails, so no error is ever hidden.
"""

import contextlib
import logging
import os
import sys
import tempfile

VERBOSE_ENV = "TESS_VERBOSE"


def verbose():
    """True when ``tess --verbose`` or ``TESS_VERBOSE=1`` asked for every message."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def configure(verbose_output=None):
    """Set how much TensorFlow and absl print, for this process and the
    processes it starts.

    Args:
        verbose_output: ``True`` shows everything, ``False`` keeps normal
            use quiet, ``None`` keeps what ``TESS_VERBOSE`` says.
    """
    if verbose_output is not None:
        os.environ[VERBOSE_ENV] = "1" if verbose_output else "0"
    loud = verbose()
    # Read when TensorFlow is imported (and by every child process); a level
    # the user set stays unless --verbose asks for everything.
    if loud:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.INFO if loud else logging.ERROR)


@contextlib.contextmanager
def native_output_quieted():
    """Run a block with file descriptors 1 and 2 captured in a temporary
    file, unless verbose. If the block raises, what it printed is written to
    stderr before the error propagates; otherwise it is dropped."""
    if verbose():
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as capture:
        failed = True
        try:
            os.dup2(capture.fileno(), 1)
            os.dup2(capture.fileno(), 2)
            yield
            failed = False
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))
                sys.stderr.flush()
