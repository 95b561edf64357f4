"""One writer per run directory.

``RunLock`` holds an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock`` (which
records the holder's pid and host) for as long as a training run writes the
directory. A second ``tess train --out RUN_DIR`` or ``--resume RUN_DIR``
finds the lock held and refuses, naming the process that holds it. The
kernel drops a flock when its process dies, however it dies (SIGKILL, a
crash), so the lock file a killed run leaves is stale by construction: the
next run locks it and takes over.
"""

import fcntl
import os
import socket
from pathlib import Path

from tess_keras.training.config import ConfigError

LOCK = ".lock"


class RunLock:
    """Exclusive lock of a run directory (a context manager).

    Args:
        run_dir: the directory; created if missing (and removed again on
            release when nothing else was written there).
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._fd = None
        self._created = False

    def acquire(self):
        """Take the lock; raises ``ConfigError`` when another process holds it
        or the directory cannot be written."""
        try:
            self._created = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise ConfigError(
                        f"{self.run_dir} is being written by another training run ({holder}); two runs in one "
                        "directory would mix their files. Wait for it to finish (or stop it: Ctrl-C saves a "
                        f"checkpoint, then `tess train --resume {self.run_dir}` continues it), or choose another --out."
                    ) from None
                # The holder before us may have removed the file after we opened it: lock the file that is there.
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        except OSError as error:
            raise ConfigError(
                f"cannot write the run directory {self.run_dir}: {error.strerror or error}. Choose another --out."
            ) from None
        self._fd = fd
        return self

    def release(self, remove_if_empty=True):
        """Drop the lock and remove the lock file (and the directory, if this
        lock created it and nothing else was written there)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: nobody holds an unlinked file's lock
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        if remove_if_empty and self._created:
            try:
                self.run_dir.rmdir()  # only succeeds when empty
            except OSError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd):
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "a process that has not written its pid yet"
