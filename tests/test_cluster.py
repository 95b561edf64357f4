"""Joining a multi-worker cluster never hangs (tess_keras.cluster).

The meeting of the workers runs in threads of this process (no TensorFlow);
what a user sees, a lone worker timing out and SIGINT/SIGTERM ending the
wait, runs ``tess train`` in subprocesses.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tess_keras import cluster, distribute


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _cluster(count):
    return {"worker": [f"127.0.0.1:{port}" for port in _free_ports(count)]}


def _meet(spec, indices, timeout, results, hashes=None):
    def one(index):
        try:
            cluster.rendezvous((hashes or {}).get(index, spec), "worker", index, timeout, notify=lambda line: None)
            results[index] = "ok"
        except cluster.ClusterJoinError as error:
            results[index] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in indices]
    for thread in threads:
        thread.start()
        time.sleep(0.3)  # staggered starts, as on real machines
    for thread in threads:
        thread.join(timeout + 30)
    return threads


def test_three_workers_meet():
    spec, results = _cluster(3), {}
    started = time.monotonic()
    _meet(spec, [2, 0, 1], 20, results)
    assert results == {0: "ok", 1: "ok", 2: "ok"}
    assert time.monotonic() - started < 10
    # Every listener is closed again: TensorFlow can serve on the ports now.
    for address in spec["worker"]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", int(address.rsplit(":", 1)[1])))


def test_lone_worker_times_out_naming_the_missing_worker():
    spec, results = _cluster(3), {}
    started = time.monotonic()
    _meet(spec, [0, 1], 1.5, results)
    elapsed = time.monotonic() - started
    assert elapsed < 8
    for index in (0, 1):
        error = results[index]
        assert isinstance(error, cluster.ClusterJoinError)
        assert error.missing == [("worker", 2)]
        assert f"worker 2 ({spec['worker'][2]}) did not answer" in str(error)
        assert "--cluster-timeout" in str(error) and "within 1.5 s" in str(error)


def test_workers_with_different_cluster_lists_refuse_each_other():
    spec = _cluster(2)
    other = {"worker": spec["worker"] + ["127.0.0.1:1"]}
    results = {}
    _meet(spec, [0, 1], 10, results, hashes={1: other})
    assert all(isinstance(results[i], cluster.ClusterJoinError) for i in (0, 1)), results
    assert any("different cluster list" in str(results[i]) for i in (0, 1)), results


def test_port_in_use_is_explained():
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        spec = {"worker": [f"127.0.0.1:{port}", "127.0.0.1:1"]}
        with pytest.raises(cluster.ClusterJoinError, match=f"cannot listen on port {port}.*free port"):
            cluster.rendezvous(spec, "worker", 0, 5)


@pytest.mark.parametrize(
    "workers, words",
    [
        (["node0"], "must be host:port"),
        (["node0:0"], "port from 1 to 65535"),
        (["node0:http"], "must be host:port"),
        ("node0:1234", "must be a list"),
    ],
)
def test_bad_addresses_are_refused_before_joining(workers, words):
    raw = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": 0}})
    with pytest.raises(distribute.DistributeError, match=words):
        distribute.read_tf_config({"TF_CONFIG": raw})


@pytest.mark.parametrize(
    "chief_task, task, expected",
    [(False, ("worker", 0), True), (False, ("worker", 1), False), (True, ("worker", 0), False), (True, ("chief", 0), True)],
)
def test_the_chief_is_known_before_joining(chief_task, task, expected):
    """Worker 0 writes the run directory, or the chief task when there is one."""
    spec = {"worker": ["a:1", "b:2"], **({"chief": ["c:3"]} if chief_task else {})}
    raw = json.dumps({"cluster": spec, "task": {"type": task[0], "index": task[1]}})
    assert distribute.chief_by_config("multi-worker", {"TF_CONFIG": raw}) is expected
    assert distribute.chief_by_config("default", {}) is True


# -- the CLI ---------------------------------------------------------------------------


def _env(tf_config):
    env = dict(os.environ)
    env.update(TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", COLUMNS="200")
    return env


def _lone_worker(tmp_path, timeout):
    spec = _cluster(2)
    tf_config = {"cluster": spec, "task": {"type": "worker", "index": 0}}
    command = [
        sys.executable, "-m", "tess_keras.cli.main", "train", "--dataset", "digits", "--epochs", "1",
        "--limit-train", "32", "--limit-test", "16", "--strategy", "multi-worker",
        "--cluster-timeout", str(timeout), "--out", str(tmp_path / "run"),
    ]
    return spec, command, _env(tf_config)


@pytest.mark.slow
def test_cli_lone_worker_times_out(tmp_path):
    spec, command, env = _lone_worker(tmp_path, 3)
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "could not form the cluster within 3 s" in output
    assert f"worker 1 ({spec['worker'][1]}) did not answer" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()
    assert time.monotonic() - started < 240  # TensorFlow's import on a busy machine, plus 3 s


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_signal_ends_the_wait_for_the_cluster(tmp_path, signum):
    spec, command, env = _lone_worker(tmp_path, 600)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        deadline = time.monotonic() + 240
        for line in process.stdout:  # the notice comes once it has waited a couple of seconds
            lines.append(line)
            if "waiting up to 600 s for the other workers" in line or time.monotonic() > deadline:
                break
        assert any("waiting up to 600 s" in line for line in lines), "".join(lines)
        assert f"worker 1 ({spec['worker'][1]})" in lines[-1]
        sent = time.monotonic()
        process.send_signal(signum)
        rest, _ = process.communicate(timeout=60)
        assert time.monotonic() - sent < 30
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    output = "".join(lines) + rest
    assert process.returncode != 0, output
    assert f"stopped by {signal.Signals(signum).name} while waiting for the cluster" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_checks_the_dataset_before_joining(tmp_path):
    """A worker whose dataset is missing says so at once; it does not wait for the cluster first."""
    spec, command, env = _lone_worker(tmp_path, 600)
    command[command.index("digits")] = "cifar10"
    env["TESS_DATA_DIR"] = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, output
    assert "cifar10" in output and str(tmp_path / "empty") in output
    assert "waiting up to" not in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sigterm_still_ends_the_process_after_joining(tmp_path):
    """TensorFlow's join installs its own SIGTERM handler (its preemption
    notifier only records the signal, so a plain MultiWorkerMirroredStrategy
    process survives SIGTERM); make_strategy puts Python's back."""
    script = tmp_path / "term.py"
    script.write_text(
        "import os, signal, time\n"
        "from tess_keras import distribute\n"
        "distribute.make_strategy('multi-worker', cluster_timeout=60)\n"
        "print('joined', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(10)\n"
        "print('survived SIGTERM', flush=True)\n"
    )
    env = _env({"cluster": _cluster(1), "task": {"type": "worker", "index": 0}})
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert "joined" in result.stdout, result.stdout + result.stderr
    assert result.returncode == -signal.SIGTERM, result.stdout + result.stderr
    assert "survived" not in result.stdout
