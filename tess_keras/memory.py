"""Measured peak memory and speed of one compiled training step.

``measure_train_step`` answers "how much memory does one batch of training
take with this rule and this T?" by running the model's real ``train_step``
(under ``tf.function``) on random data and measuring, not modelling. The
figure is the peak of the bytes the step has allocated and not yet freed:

* CPU: memray tracks every heap allocation and free made during the step,
  in every thread (TensorFlow's CPU allocator and its kernels' scratch
  memory go through ``malloc`` / ``posix_memalign``), and reports their
  high-water mark. The step runs on one thread (one inter-op and one
  intra-op thread) and is traced with a fixed ``PYTHONHASHSEED`` (string
  hashing orders the sets the tracing walks, and so the ops), so its ops
  run, and free their buffers, in the same order on every run. One choice
  is still left to timing: when a ``tf.function`` instance starts, which of
  its kernels may write their output into their input's buffer, which can
  save one activation map or two (the test's TESS step: 40.1 MiB most
  often, 39.9, 38.4 or 38.0 MiB in about one instance in three). So the
  step is traced and measured four times in its process, each time as a
  fresh instance, and the largest peak is the figure; it repeats within
  0.5 % run to run, on an idle or a busy machine. TensorFlow's oneDNN
  kernels are turned off (``TF_ENABLE_ONEDNN_OPTS=0``): TensorFlow enables
  them by itself on CPUs with AVX512-VNNI or AMX, and they keep their
  buffers in a pool of their own, which memray does not see. (With
  TensorFlow's thread pools or another hash seed it moved by up to 6 %; a
  resident-set high-water mark moved by megabytes under load; TensorFlow's
  CPU BFC allocator counts whole free-list chunks, which moved by 3-10 %
  from run to run.) Kernels' per-thread scratch buffers are those of a
  single thread.
* GPU: TensorFlow's allocator statistics of the first GPU
  (``reset_memory_stats`` / ``get_memory_info``), peak minus the bytes
  allocated before the step.

Steps are timed in a second fresh process with TensorFlow's default
threading and no tracking, as training runs.

Every process is forked from a helper interpreter that has already imported
TensorFlow (it does nothing else before forking), which saves the import
time per configuration. Linux and macOS (``fork``, memray).
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys

# The measuring process's side; StepPeak is also used by bench/gpu_bench.py.
from tess_keras.memory_worker import MeasurementError, StepPeak  # noqa: F401



@dataclasses.dataclass
class StepMeasurement:
    """One configuration's measured training step.

    Attributes:
        rule: the rule's config (``{"name": ..., **get_config()}``).
        time_steps, batch_size: the configuration.
        peak_bytes: peak bytes the step allocated and had not yet freed
            (CPU: memray; GPU: TensorFlow's allocator statistics).
        baseline_bytes: bytes held before the step and not counted in the
            peak: the weights, the optimizer's slots and the input batch.
        step_seconds: wall time of each timed step (after the warm-up).
        step_cpu_seconds: CPU time (all threads) of each timed step; less
            disturbed than wall time when other processes share the cores.
        device: ``"CPU"`` or the GPU's name.
        method: ``"memray"`` (CPU) or ``"tf-allocator"`` (GPU).
    """

    rule: dict
    time_steps: int
    batch_size: int
    peak_bytes: int
    baseline_bytes: int
    step_seconds: list
    step_cpu_seconds: list
    device: str
    method: str

    @property
    def samples_per_second(self):
        """Training throughput from the median timed step (0 if none timed)."""
        return _throughput(self.batch_size, self.step_seconds)

    @property
    def samples_per_cpu_second(self):
        """Samples per CPU-second (all threads) from the median timed step."""
        return _throughput(self.batch_size, self.step_cpu_seconds)


def _throughput(batch_size, seconds):
    if not seconds:
        return 0.0
    return batch_size / sorted(seconds)[len(seconds) // 2]


def _rule_config(rule):
    from tess_keras import rules

    rule = rules.get(rule)
    return {"name": rule.name, **rule.get_config()}


def _model_spec(model):
    if isinstance(model, str):
        from tess_keras.models import MODELS

        if model not in MODELS:
            raise ValueError(f"Unknown model {model!r}; choose one of {', '.join(MODELS)} or pass a SpikingSequential.")
        return {"name": model}
    import keras

    return {"config": keras.saving.serialize_keras_object(model)}


def _job(rule, time_steps, batch_size, input_shape, num_classes, model, timed_steps, device, seed):
    time_steps, batch_size = int(time_steps), int(batch_size)
    if time_steps < 1 or batch_size < 1:
        raise ValueError(f"time_steps and batch_size must be >= 1, got {time_steps} and {batch_size}.")
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}.")
    return {
        "rule": _rule_config(rule),
        "time_steps": time_steps,
        "batch_size": batch_size,
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
        "model": _model_spec(model),
        "timed_steps": int(timed_steps),
        "device": device,
        "seed": int(seed),
    }


def profile_train_steps(jobs, timeout=600, workers=1):
    """Measure several configurations, each in fresh processes of its own.

    Memory is measured first, ``workers`` configurations at a time (each in
    its own process with its own allocator statistics, so running several
    at once, or beside other programs, leaves the figures unchanged); then
    the configurations with ``timed_steps > 0`` are timed one at a time.

    Args:
        jobs: list of dicts of ``measure_train_step``'s keyword arguments
            (``rule``, ``time_steps``, ``batch_size``, ``input_shape`` and
            optionally ``num_classes``, ``model``, ``timed_steps``,
            ``device``, ``seed``).
        timeout: seconds allowed for all of them together.
        workers: memory measurements run at the same time.

    Returns:
        One ``StepMeasurement`` per job, in order.

    Raises:
        ValueError: a job's arguments are invalid (before any process starts).
        MeasurementError: a measuring process failed (e.g. out of memory).
    """
    defaults = {"num_classes": 10, "model": "mcu", "timed_steps": 0, "device": "auto", "seed": 0}
    specs = [_job(**{**defaults, **job}) for job in jobs]
    if not specs:
        return []
    if not hasattr(os, "fork"):
        raise MeasurementError("Measuring memory needs os.fork (Linux or macOS); this system has none.")
    return [StepMeasurement(**record) for record in _run_server(specs, timeout, workers)]


def _run_server(specs, timeout, workers):
    """Run the fork server (``python -m tess_keras.memory_worker``) on ``specs``."""
    # PYTHONHASHSEED: Python's string hashing orders sets while the step is
    # traced, and so the order of its ops; one seed gives one order, hence one
    # peak (other seeds' orders peaked up to 6 % apart here).
    # TF_ENABLE_ONEDNN_OPTS=0: TensorFlow turns oneDNN on by itself on CPUs
    # with AVX512-VNNI or AMX, and oneDNN serves its buffers from a pool it
    # keeps across steps, out of memray's sight (the test's TESS step: 1.0 MiB
    # with it, 40.1 MiB with TensorFlow's own kernels); one kernel set on
    # every machine keeps the figures comparable.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0", "TF_ENABLE_ONEDNN_OPTS": "0"}
    # Own session, so a timeout stops the server and the children it forked.
    server = subprocess.Popen(
        [sys.executable, "-m", "tess_keras.memory_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        request = "".join(json.dumps(item) + "\n" for item in [workers, *specs])
        stdout, stderr = server.communicate(request, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        os.killpg(server.pid, signal.SIGKILL)
        server.communicate()
        raise MeasurementError(f"Measuring took longer than {timeout} s; use fewer or smaller configurations.") from error
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if server.returncode != 0 or len(lines) != len(specs):
        raise MeasurementError(f"The measuring process failed (exit {server.returncode}):\n{stderr[-3000:]}")
    records = [json.loads(line) for line in lines]
    for record in records:
        if "error" in record:
            raise MeasurementError(f"Measuring {record['job']} failed: {record['error']}")
    return records


def measure_train_step(
    rule,
    time_steps,
    batch_size,
    input_shape,
    num_classes=10,
    model="mcu",
    device="auto",
    seed=0,
    timeout=600,
):
    """Peak memory (bytes) of one compiled training step.

    The model's ``train_step`` (rule gradients plus an Adam update) runs
    under ``tf.function`` on random inputs in [0, 1) ``[batch, T, *shape]``
    in a fresh process; after a warm-up step that traces it, the peak bytes
    the next step allocates and has not yet freed are measured (CPU: memray's
    allocation tracking; GPU: TensorFlow's allocator statistics). Model
    weights, optimizer slots and the input batch exist before the step and
    are not counted; everything the step creates is (traces or stored
    activations, gradients, temporaries).

    Args:
        rule: rule name (``"tess"``, ``"stllr"``, ``"bptt"``) or a
            ``tess_keras.rules`` object, e.g. ``TESS(alpha_post=0)``.
        time_steps: T, the number of time steps per sample.
        batch_size: samples per batch.
        input_shape: per-step input ``(H, W, C)``.
        num_classes: classes of the readout.
        model: a name from ``tess_keras.models.MODELS`` (``"mcu"``,
            ``"vgg9"``) or a ``SpikingSequential`` whose architecture is
            used (fresh weights; ``rule`` replaces its rule).
        device: ``"auto"`` (GPU if TensorFlow sees one), ``"cpu"`` or
            ``"gpu"``.
        seed: seed of the weights and the random batch.
        timeout: seconds before the measuring process is stopped.

    Returns:
        Peak bytes of the step, as an int.

    Example:
        >>> measure_train_step("bptt", 20, 16, (32, 32, 2)) / 2**20   # MiB
    """
    job = {
        "rule": rule,
        "time_steps": time_steps,
        "batch_size": batch_size,
        "input_shape": input_shape,
        "num_classes": num_classes,
        "model": model,
        "device": device,
        "seed": seed,
    }
    return profile_train_steps([job], timeout=timeout)[0].peak_bytes
