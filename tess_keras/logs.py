"""How chatty TensorFlow may be: quiet in normal use, everything with
``tess --verbose`` (or ``TESS_VERBOSE=1``).

Quiet means: TensorFlow's C++ log below errors is dropped
(``TF_CPP_MIN_LOG_LEVEL=2``, set before TensorFlow is imported), absl's
Python warnings are dropped, and native code that prints straight to the
terminal (the TFLite converter's ``fully_quantize: 0, ...`` line, and
TensorFlow's own import on CPUs with AVX512-VNNI or AMX, whose libraries
log "oneDNN custom operations are on" before absl's logging is set up,
out of ``TF_CPP_MIN_LOG_LEVEL``'s reach) runs with its output captured
(``native_output_quieted``); what it printed is shown only if the block
fails, so no error is ever hidden.
"""

import contextlib
import importlib.abc
import importlib.util
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
    if not loud and "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as usual but runs its import (everything it
    imports in turn included) under ``native_output_quieted``."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once is enough; the other finders answer as they would have
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # The real loader answers everything after the import (resources, source).
        module.__loader__ = module.__spec__.loader = self.loader
        with native_output_quieted():
            self.loader.exec_module(module)


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
