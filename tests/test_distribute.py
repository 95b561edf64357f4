"""tf.distribute strategies, mixed precision and XLA (tess_keras.distribute).

The strategy checks run in fresh processes (``distribute_checks.py``): the
CPU is split into 2 logical devices, or two local processes form a
2-worker cluster, and TensorFlow fixes both when its runtime starts, which
in this pytest process other tests have already done.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tess_keras import distribute, training

CHECKS = Path(__file__).with_name("distribute_checks.py")
TIMEOUT = 900  # against hangs only: these take about a minute on 2 idle cores


def _env(**extra):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", **extra)
    return env


def _result(output, what):
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, f"{what} printed no result; its output ends with:\n{output[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


# -- configuration errors (no TensorFlow runtime needed) ----------------------------


def test_tf_config_is_parsed_and_checked():
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    good = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    assert distribute.read_tf_config({"TF_CONFIG": good}) == (cluster, "worker", 1)
    for bad, words in [
        ("", "needs the TF_CONFIG environment variable"),
        ("{not json", "not valid"),
        (json.dumps({"cluster": cluster}), "not valid"),
        (json.dumps({"cluster": {}, "task": {"type": "worker", "index": 0}}), "lists no workers"),
        (json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 2}}), "has 2 worker entries"),
    ]:
        with pytest.raises(distribute.DistributeError, match=words):
            distribute.read_tf_config({"TF_CONFIG": bad})


def test_train_options_are_validated(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(training.ConfigError, match="unknown --strategy 'tpu'; choose one of: default, mirrored"):
        training.resolve_config({"strategy": "tpu"})
    with pytest.raises(training.ConfigError, match="unknown precision 'float16'"):
        training.resolve_config({"precision": "float16"})
    with pytest.raises(training.ConfigError, match="needs the TF_CONFIG"):
        training.resolve_config({"strategy": "multi-worker"})
    config = training.resolve_config({"strategy": "mirrored", "precision": "mixed_bfloat16", "jit": True})
    assert (config.strategy, config.precision, config.jit) == ("mirrored", "mixed_bfloat16", True)


def test_config_file_sets_strategy_options(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('strategy = "mirrored"\nprecision = "mixed_float16"\njit = true\n')
    assert training.read_config_file(path) == {"strategy": "mirrored", "precision": "mixed_float16", "jit": True}
    path.write_text("jit = 1\n")
    with pytest.raises(training.ConfigError, match="jit must be true or false"):
        training.read_config_file(path)


def test_cli_rejects_multi_worker_without_tf_config(tmp_path):
    result = subprocess.run(
        ["tess", "train", "--strategy", "multi-worker", "--epochs", "1", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=_env(), timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "needs the TF_CONFIG environment variable" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("built_with_cuda", [False, True])
def test_unusable_gpu_is_explained(monkeypatch, built_with_cuda):
    """A machine with an NVIDIA GPU that TensorFlow cannot use (CPU-only build,
    or no CUDA libraries) says why and how to fix it; a machine without one,
    or one whose GPU TensorFlow uses, has nothing to say."""
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda device_type=None: [])
    monkeypatch.setattr(tf.test, "is_built_with_cuda", lambda: built_with_cuda)
    monkeypatch.setattr(distribute, "_nvidia_gpu_present", lambda: True)
    gpus, problem = distribute.gpu_status()
    assert gpus == []
    assert "NVIDIA GPU" in problem and "pip install -e '.[gpu]'" in problem
    assert ("CPU-only build" in problem) != built_with_cuda

    monkeypatch.setattr(distribute, "_nvidia_gpu_present", lambda: False)
    assert distribute.gpu_status() == ([], None)

    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda device_type=None: [gpu])
    monkeypatch.setattr(distribute, "_nvidia_gpu_present", lambda: True)
    assert distribute.gpu_status() == (["/physical_device:GPU:0"], None)


def test_precision_policy_restores_the_global_policy():
    import keras

    from tess_keras.layers import SpikingDense

    before = keras.mixed_precision.global_policy().name
    with distribute.precision_policy("mixed_float16"):
        layer = SpikingDense(3)
    assert keras.mixed_precision.global_policy().name == before
    assert (layer.compute_dtype, layer.variable_dtype) == ("float16", "float32")
    with pytest.raises(distribute.DistributeError, match="unknown precision"):
        with distribute.precision_policy("half"):
            pass


# -- MirroredStrategy on 2 logical CPU devices ------------------------------------------


def _run_together(commands, envs):
    """Run processes side by side (tracing is single-threaded; two use both
    cores) and return their outputs, failing with the output of any that failed."""
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for command, env in zip(commands, envs)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for command, process, output in zip(commands, processes, outputs):
        assert process.returncode == 0, f"{' '.join(command[1:])} failed:\n{output[-6000:]}"
    return outputs


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    work = tmp_path_factory.mktemp("mirrored")
    commands = [[sys.executable, str(CHECKS), "steps"], [sys.executable, str(CHECKS), "resume", str(work)]]
    steps, resume = _run_together(commands, [_env(), _env()])
    return {**_result(steps, "the step checks"), "resume": _result(resume, "the resume check")}


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["tess", "stllr", "bptt"])
def test_mirrored_step_equals_single_device_step(mirrored, rule):
    """Per-replica sums + all-reduce SUM == the single-device sum over the global batch."""
    assert mirrored["replicas"] == 2
    check = mirrored[f"equal_{rule}"]
    # The step moved every weight tensor, by far more than the difference.
    assert check["smallest_change"] > 1e-4
    assert check["weight_difference"] < 1e-5
    assert check["mirrored_logs"]["samples"] == check["single_logs"]["samples"] == 10
    for name in ("loss", "accuracy"):
        assert check["mirrored_logs"][name] == pytest.approx(check["single_logs"][name], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["tess", "bptt"])
def test_xla_step_matches_plain_step(mirrored, rule):
    check = mirrored[f"jit_{rule}"]
    assert check["smallest_change"] > 1e-4
    assert check["weight_difference"] < 1e-5
    assert check["loss"][0] == pytest.approx(check["loss"][1], rel=1e-5)
    if rule == "tess":
        assert check["mirrored_weight_difference"] < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize(
    "precision, rule",
    [("mixed_float16", "tess"), ("mixed_float16", "stllr"), ("mixed_float16", "bptt"), ("mixed_bfloat16", "tess")],
)
def test_mixed_precision_step_is_finite_and_keeps_state_float32(mirrored, precision, rule):
    check = mirrored[f"{precision}_{rule}"]
    assert check["finite"]
    assert check["compute_dtype"] == precision.split("_")[1]
    assert check["state_dtype"] == "float32" and check["weight_dtype"] == "float32"
    assert check["changed"] > 0
    assert all(2.0 > loss > 0.1 for loss in check["loss"])
    if precision == "mixed_float16":
        # Loss-scaled: the scale starts at 2**15 and these small updates fit,
        # so both steps were applied (a skipped step leaves iterations at 0).
        assert check["optimizer"] == "LossScaleOptimizer"
        assert check["applied_steps"] == 2
    else:
        assert check["optimizer"] == "Adam"
    assert mirrored["policy_after"] == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("rule", ["tess", "stllr", "bptt"])
def test_mixed_precision_updates_match_float32(mirrored, precision, rule):
    """16-bit synapses must not change where or how far the rule steps: every
    weight tensor's update is nearly parallel to float32's on the same weights,
    and as large once the loss scale is taken out."""
    agreement = mirrored[f"agreement_{precision}_{rule}"]
    hidden = {name: a for name, a in agreement.items() if not name.startswith("readout")}
    assert len(hidden) == 4 and all(a is not None for a in hidden.values()), agreement
    for name, measured in agreement.items():
        if measured is None:
            # Only BPTT's float16 backward pass can overflow at the initial
            # loss scale (2**15), in the readout's large gradients; the
            # LossScaleOptimizer then skips the step and lowers the scale.
            assert (precision, rule) == ("mixed_float16", "bptt") and name.startswith("readout"), agreement
        else:
            cosine, norm_ratio = measured
            assert cosine > 0.99, agreement
            assert norm_ratio == pytest.approx(1.0, abs=0.05), agreement


@pytest.mark.slow
def test_resume_under_mirrored_strategy_is_exact(mirrored):
    resume = mirrored["resume"]
    assert resume["replicas"] == 2
    assert len(resume["straight_metrics"]) == 3  # header + 2 epochs
    straight = [row.split(",")[:5] for row in resume["straight_metrics"]]
    resumed = [row.split(",")[:5] for row in resume["resumed_metrics"]]
    assert resumed == straight
    assert resume["resumed"] == resume["straight"]


# -- MultiWorkerMirroredStrategy: two local worker processes ----------------------------


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_one_epoch_with_identical_weights(tmp_path):
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    commands, envs = [], []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        # Separate run directories: the chief's is written, the other's must stay empty.
        commands.append([sys.executable, str(CHECKS), "worker", str(tmp_path / f"out{index}"), "0"])
        envs.append(_env(TF_CONFIG=tf_config))
    outputs = _run_together(commands, envs)
    chief, other = (_result(output, f"worker {i}") for i, output in enumerate(outputs))

    assert chief["chief"] and not other["chief"]
    assert chief["workers"] == other["workers"] == 2 and chief["replicas"] == 2
    # Data sharding: each global batch of 8 ids is split between the workers,
    # every id reaches exactly one worker, and both run the same steps.
    assert len(chief["batches_seen"]) == len(other["batches_seen"]) == 7
    for step, (mine, theirs) in enumerate(zip(chief["batches_seen"], other["batches_seen"])):
        assert sorted(mine + theirs) == list(range(8 * step, min(8 * step + 8, 50)))
        assert mine and theirs and not set(mine) & set(theirs)

    # One full epoch of digits (1400 samples, 22 global batches of 64), same weights everywhere.
    assert chief["summary"]["epochs"] == 1 and chief["summary"]["strategy"] == "multi-worker"
    assert chief["summary"]["weights_sha256"] == other["summary"]["weights_sha256"]
    assert chief["summary"]["test_accuracy"] == other["summary"]["test_accuracy"]
    assert chief["summary"]["test_accuracy"] > 0.2  # one epoch of digits learns something (chance: 0.1)

    # Only the chief wrote, and what it wrote holds those weights.
    written = tmp_path / "out0"
    assert {"summary.json", "metrics.csv", training.CHECKPOINT, "model.keras", "config.json"} <= {
        p.name for p in written.iterdir()
    }
    assert not (tmp_path / "out1").exists()
    saved = json.loads((written / "summary.json").read_text())
    assert saved["weights_sha256"] == chief["summary"]["weights_sha256"]
    weights = training.read_arrays(written / training.CHECKPOINT)["model"].values()
    digest = hashlib.sha256()
    for weight in weights:
        digest.update(np.ascontiguousarray(weight).tobytes())
    assert digest.hexdigest() == chief["summary"]["weights_sha256"]
