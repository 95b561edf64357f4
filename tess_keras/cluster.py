"""Joining a multi-worker cluster without hanging.

``tf.distribute.MultiWorkerMirroredStrategy()`` waits, inside one C++ call
that holds the GIL, until every worker of ``TF_CONFIG`` has registered with
the coordination service: with a worker missing it waits for good, and it
installs its own SIGTERM handler (TensorFlow's preemption notifier), so
neither Ctrl-C nor ``kill`` ends it. So the workers first meet in Python:

1. Each worker listens on its own ``TF_CONFIG`` port (the one TensorFlow
   will serve on) and, every half second, calls every other worker's port
   and sends a hello (its task, and a hash of its cluster list); a worker
   answers a valid hello with ``ok`` (or says why not: another cluster list,
   the same task twice).
2. A worker is through when every other worker has answered its hello and
   it has answered every other worker's; then it closes its listener and
   TensorFlow joins at once. Either condition implies the peers are at least
   in step 1 and will be through within one round trip.
3. Step 1 runs in Python with short socket timeouts: SIGINT and SIGTERM end
   it, and after ``timeout`` seconds it stops with a message naming the
   workers not reached. TensorFlow's own join (step 2, normally well under
   a second) runs under a watchdog process that ends this one with a message
   if a worker vanished in between, and with SIGINT at its default action.

After the join, the Python signal handlers in force before it are put back
(TensorFlow's SIGTERM handler would otherwise swallow SIGTERM for the rest
of the run).
"""

import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

from tess_keras.distribute import DistributeError

DEFAULT_TIMEOUT = 120.0  # seconds; `tess train --cluster-timeout`
RETRY_SECONDS = 0.5
NOTICE_AFTER = 2.0  # say what it waits for when joining takes longer than this
PROTOCOL = "tess-join/1"

_WATCHDOG = r"""
import os, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], seconds)
if not ready:  # the parent neither finished nor died: it hangs in TensorFlow's join
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    try:
        os.kill(parent, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""


class ClusterJoinError(DistributeError):
    """The cluster could not be joined (timeout, signal, bad peer); the message names the workers."""

    def __init__(self, message, missing=(), signum=None):
        super().__init__(message)
        self.missing = list(missing)
        self.signum = signum


class _Stop(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def members(cluster):
    """``[(task_type, index, "host:port")]`` of the workers that train (chief and worker tasks)."""
    return [(kind, i, address) for kind in ("chief", "worker") for i, address in enumerate(cluster.get(kind) or [])]


def split_address(address, where="TF_CONFIG"):
    """``(host, port)`` of a ``"host:port"`` cluster entry; raises ``DistributeError``."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributeError(
            f"{where} lists the worker address {address!r}; each must be host:port with a port from 1 to 65535, "
            'e.g. "node0:23456".'
        )
    return host.strip("[]"), int(port)


def cluster_hash(cluster):
    """The same short hash on every worker given the same cluster list."""
    listed = {kind: list(cluster.get(kind) or []) for kind in ("chief", "worker")}
    return hashlib.sha256(json.dumps(listed, sort_keys=True).encode()).hexdigest()[:16]


def _name(kind, index, address):
    return f"{kind} {index} ({address})"


def _listen(port, me):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("0.0.0.0", port))
    except OSError as error:
        listener.close()
        raise ClusterJoinError(
            f"this worker, {me} in TF_CONFIG, cannot listen on port {port}: {error.strerror or error}. Another "
            "program (or another tess train) is using it; stop that, or give this worker a free port in "
            "TF_CONFIG on every machine."
        ) from None
    listener.listen(16)
    listener.setblocking(False)
    return listener


def _answer(connection, me, my_hash, peers, heard):
    """Read one hello on an accepted connection and answer it; returns a
    problem to report, or None."""
    connection.settimeout(2.0)
    try:
        hello = json.loads(connection.recv(4096).decode())
        key = (hello["type"], int(hello["index"]))
        known = hello["protocol"] == PROTOCOL
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        known = False
    if not known:
        return None  # not a tess worker (a TensorFlow peer already in its join, a port scanner): ignore
    if hello.get("cluster") != my_hash:
        reply = {"ok": False, "why": "a different cluster list in its TF_CONFIG"}
    elif key == me or key not in peers:
        reply = {"ok": False, "why": f"the task {key[0]} {key[1]}, which is this worker's or not in the cluster"}
    else:
        reply = {"ok": True}
    try:
        connection.sendall(json.dumps(reply).encode())
        connection.recv(1)  # wait for the caller to close first: its side keeps the TIME_WAIT, not our port
    except OSError:
        return None
    if reply["ok"]:
        heard.add(key)
        return None
    return f"{_name(*key, peers.get(key, '?'))} has {reply['why']}"


class _Responder(threading.Thread):
    """Answers the other workers' hellos on this worker's port until stopped."""

    def __init__(self, listener, me, my_hash, peers):
        super().__init__(daemon=True)
        self.listener, self.me, self.my_hash, self.peers = listener, me, my_hash, peers
        self.heard, self.problem = set(), None
        self.stopping = threading.Event()

    def run(self):
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            while not self.stopping.is_set():
                if not selector.select(timeout=0.1):
                    continue
                try:
                    connection, _ = self.listener.accept()
                except (BlockingIOError, OSError):
                    continue
                with connection:
                    problem = _answer(connection, self.me, self.my_hash, self.peers, self.heard)
                self.problem = self.problem or problem


def _greet(address, me, my_hash):
    """Send our hello to ``address``; True once it answers ok, a string when it refuses us."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=1.0) as connection:
            connection.settimeout(2.0)
            connection.sendall(json.dumps({"protocol": PROTOCOL, "type": me[0], "index": me[1], "cluster": my_hash}).encode())
            reply = json.loads(connection.recv(4096).decode())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if reply.get("ok"):
        return True
    return f"{address} answered that this worker has {reply.get('why', 'a problem')}"


def rendezvous(cluster, task_type, task_index, timeout=DEFAULT_TIMEOUT, notify=None):
    """Wait until every worker of ``cluster`` is up (step 1 of the module docstring).

    Args:
        cluster: the ``TF_CONFIG`` cluster dict.
        task_type: this worker's task type (``worker`` or ``chief``).
        task_index: this worker's index.
        timeout: seconds to wait for the other workers.
        notify: called once with a line saying what it waits for, when that
            takes more than ``NOTICE_AFTER`` seconds (default: print to stderr).

    Raises:
        ClusterJoinError: timeout (``missing`` names the workers not reached),
            SIGINT/SIGTERM (``signum``), a port in use, a peer with another
            cluster list.
    """
    notify = notify or (lambda line: print(line, file=sys.stderr, flush=True))
    everyone = {(kind, i): address for kind, i, address in members(cluster)}
    me = (task_type, task_index)
    if me not in everyone:
        raise ClusterJoinError(f"TF_CONFIG names this process {task_type} {task_index}, which does not train; use a worker or chief task.")
    peers = {key: address for key, address in everyone.items() if key != me}
    for address in everyone.values():
        split_address(address)
    my_hash = cluster_hash(cluster)
    listener = _listen(split_address(everyone[me])[1], _name(*me, everyone[me]))
    responder = _Responder(listener, me, my_hash, peers)
    greeted, heard = set(), responder.heard
    started = time.monotonic()
    noticed = False
    responder.start()
    try:
        with _signals_raise():
            while not (greeted == set(peers) and heard == set(peers)):
                if responder.problem:
                    raise ClusterJoinError(f"cannot join the cluster: {responder.problem}. {_SAME_TF_CONFIG}")
                now = time.monotonic()
                if now - started > timeout:
                    missing = sorted(set(peers) - (greeted & heard))
                    raise ClusterJoinError(_timeout_message(me, everyone, missing, greeted, timeout), missing)
                if not noticed and now - started > NOTICE_AFTER:
                    noticed = True
                    waiting = ", ".join(_name(*key, peers[key]) for key in sorted(set(peers) - (greeted & heard)))
                    notify(f"waiting up to {timeout:g} s for the other workers of the cluster: {waiting}")
                for key in sorted(set(peers) - greeted):
                    answer = _greet(peers[key], me, my_hash)
                    if isinstance(answer, str):
                        raise ClusterJoinError(f"cannot join the cluster: {answer}. {_SAME_TF_CONFIG}")
                    if answer:
                        greeted.add(key)
                if not (greeted == set(peers) and heard == set(peers)):
                    time.sleep(RETRY_SECONDS if greeted != set(peers) else 0.05)
    except _Stop as stop:
        missing = sorted(set(peers) - (greeted & heard))
        raise ClusterJoinError(
            f"stopped by {signal.Signals(stop.signum).name} while waiting for the cluster"
            + (f" (not reached: {', '.join(_name(*key, peers[key]) for key in missing)})" if missing else "")
            + "; nothing was trained or written.",
            missing,
            stop.signum,
        ) from None
    finally:
        responder.stopping.set()
        responder.join()
        listener.close()


_SAME_TF_CONFIG = (
    "Every worker must have the same cluster list in TF_CONFIG and its own task index (0, 1, ... on each machine)."
)


def _timeout_message(me, everyone, missing, greeted, timeout):
    parts = []
    for key in missing:
        address = everyone[key]
        if key in greeted:
            parts.append(f"{_name(*key, address)} answered but has not reached this worker, {everyone[me]}")
        else:
            parts.append(f"{_name(*key, address)} did not answer")
    return (
        f"could not form the cluster within {timeout:g} s: {'; '.join(parts)}. Start `tess train --strategy "
        "multi-worker` with the same options on every machine of TF_CONFIG (each with its own task index), check "
        "that the addresses and ports are reachable from each other (firewall), or allow more time with "
        "--cluster-timeout SECONDS. Nothing was trained or written."
    )


class _signals_raise:
    """SIGINT and SIGTERM raise ``_Stop`` (main thread only; elsewhere nothing changes)."""

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise _Stop(signum)

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def join(make, cluster, task_type, task_index, timeout=DEFAULT_TIMEOUT, notify=None):
    """Meet the other workers, then build the strategy with ``make()``.

    Args:
        make: builds the strategy (``tf.distribute.MultiWorkerMirroredStrategy``).
        cluster, task_type, task_index: from ``read_tf_config``.
        timeout: seconds to wait for the other workers (``--cluster-timeout``).
        notify: see ``rendezvous``.

    Returns:
        What ``make()`` returns.

    Raises:
        ClusterJoinError: see ``rendezvous``; or TensorFlow refused to join.
    """
    rendezvous(cluster, task_type, task_index, timeout, notify)
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    if main:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # TensorFlow's join holds the GIL: let Ctrl-C kill it
    grace = max(30.0, timeout)
    message = (
        f"error: the other workers were up, but TensorFlow could not form the cluster within {grace:g} s (a worker "
        "stopped meanwhile?); this worker was stopped. Start every worker again."
    )
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(grace), message], stdin=subprocess.PIPE
    )
    try:
        return make()
    except Exception as error:  # TensorFlow's OpError family (gRPC server not started, deadline...)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise ClusterJoinError(
            f"TensorFlow could not join the cluster ({first}). Check that this worker's address in TF_CONFIG "
            f"is this machine's and its port is free, then start every worker again."
        ) from None
    finally:
        watchdog.stdin.close()
        watchdog.wait()
        for signum, handler in previous.items():  # also replaces TensorFlow's SIGTERM handler
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
