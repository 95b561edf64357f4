"""Measured peak memory and speed of one compiled training step.

``measure_train_step`` answers "how much memory does one batch of training
take with this rule and this T?" by running the model's real ``train_step``
(under ``tf.function``) on random data and measuring, not modelling. The
figure is the peak of the bytes the step has allocated and not yet freed:

* CPU: memray tracks every heap allocation and free made during the step,
  in every thread (TensorFlow's CPU allocator and its kernels' scratch
  memory go through ``malloc`` / ``posix_memalign``), and reports their
  high-water mark. The step runs with one inter-op thread, so independent
  ops run in the same order, and hold the same buffers at the same time, on
  every run: the figure repeats within 0.1 % run to run, on an idle or a
  busy machine. (A resident-set high-water mark moved by megabytes under
  load, and TensorFlow's CPU BFC allocator counts whole free-list chunks,
  which moved by 3-10 % from run to run.)
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


class MeasurementError(RuntimeError):
    """A measuring process failed; the message carries its error output."""


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
    """Run the fork server (``python -m tess_keras.memory``) on ``specs``."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # Own session, so a timeout stops the server and the children it forked.
    server = subprocess.Popen(
        [sys.executable, "-m", "tess_keras.memory"],
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


# -- inside the measuring process ---------------------------------------------


class StepPeak:
    """Peak bytes allocated and still live between ``start()`` and
    ``peak()``: TensorFlow's allocator statistics on a GPU (above the bytes
    live at ``start()``); on the CPU, memray's high-water mark of the heap
    allocations made after ``start()`` (every thread; ``malloc`` and
    friends, which TensorFlow's CPU allocator and its kernels use).

    Args:
        gpu: TensorFlow device name of the GPU to watch (e.g. ``"GPU:0"``),
            or ``None`` for the CPU.
    """

    def __init__(self, gpu=None):
        self.gpu = gpu
        self.method = "tf-allocator" if gpu else "memray"
        self.baseline = 0
        self._tracker = self._folder = None

    def start(self):
        """Start measuring; returns the bytes held now (GPU: allocated by
        TensorFlow; CPU: the process's resident set, for information).

        Raises:
            MeasurementError: memray is not installed (CPU).
        """
        if self.gpu:
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats(self.gpu)
            self.baseline = tf.config.experimental.get_memory_info(self.gpu)["current"]
            return self.baseline
        try:
            import memray
        except ImportError as error:
            raise MeasurementError(
                "Measuring CPU memory needs memray (Linux or macOS): pip install memray."
            ) from error
        import tempfile

        self.baseline = _resident_bytes()
        self._folder = tempfile.TemporaryDirectory(prefix="tess-memray-")
        destination = memray.FileDestination(os.path.join(self._folder.name, "step.bin"), compress_on_exit=False)
        self._tracker = memray.Tracker(destination=destination, native_traces=False, memory_interval_ms=1000)
        self._tracker.__enter__()
        return self.baseline

    def peak(self):
        """Peak bytes above the baseline since ``start()`` (CPU: stops the
        tracking; call ``start()`` again to measure again)."""
        if self.gpu:
            import tensorflow as tf

            return tf.config.experimental.get_memory_info(self.gpu)["peak"] - self.baseline
        import memray

        self._tracker.__exit__(None, None, None)
        try:
            with memray.FileReader(os.path.join(self._folder.name, "step.bin")) as reader:
                return int(reader.metadata.peak_memory)
        finally:
            self._folder.cleanup()
            self._tracker = self._folder = None


def _resident_bytes():
    """The process's resident set (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _held_bytes(model, *tensors):
    """Bytes of the model's weights and optimizer slots plus ``tensors``."""
    import numpy as np
    import tensorflow as tf

    values = [*model.variables, *model.optimizer.variables, *tensors]
    return int(sum(np.prod(v.shape) * tf.as_dtype(v.dtype).size for v in values))


def _build(spec):
    import keras

    from tess_keras import rules
    from tess_keras.models import build_model

    rule_config = dict(spec["rule"])
    rule = rules.get(rule_config.pop("name"), **rule_config)
    keras.utils.set_random_seed(spec["seed"])
    if "name" in spec["model"]:
        model = build_model(spec["model"]["name"], spec["input_shape"], spec["num_classes"], rule=rule)
    else:
        model = keras.saving.deserialize_keras_object(spec["model"]["config"])
        model.rule = rule
        model.build((None, None) + tuple(spec["input_shape"]))
    if model.num_classes != spec["num_classes"]:
        raise ValueError(f"The model has {model.num_classes} classes but num_classes={spec['num_classes']}.")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    return model


def _run(spec, task):
    """In a fresh child: build and warm up one configuration, then measure
    one step's memory (``task == "memory"``) or time ``timed_steps`` steps
    (``task == "timing"``). Returns that part of the record."""
    import time

    import tensorflow as tf

    if task == "memory":  # one schedule of independent ops, so the same tensors are live together
        tf.config.threading.set_inter_op_parallelism_threads(1)
    gpus = tf.config.list_physical_devices("GPU") if spec["device"] != "cpu" else []
    if spec["device"] == "gpu" and not gpus:
        raise MeasurementError("device='gpu' but TensorFlow sees no GPU.")
    if spec["device"] == "cpu":
        tf.config.set_visible_devices([], "GPU")
    on_gpu = bool(gpus)
    with tf.device("/GPU:0" if on_gpu else "/CPU:0"):
        model = _build(spec)
        generator = tf.random.Generator.from_seed(spec["seed"])
        shape = [spec["batch_size"], spec["time_steps"], *spec["input_shape"]]
        inputs = generator.uniform(shape)
        labels = generator.uniform([spec["batch_size"]], maxval=spec["num_classes"], dtype=tf.int32)
        train_step = tf.function(model.train_step)

        def run_step():
            train_step((inputs, labels))["loss"].numpy()  # .numpy() waits for the step

        run_step()  # traces the graph and allocates what lives across steps
        if task == "memory":
            memory = StepPeak("GPU:0" if on_gpu else None)
            memory.start()
            run_step()
            return {
                "peak_bytes": int(memory.peak()),
                "baseline_bytes": _held_bytes(model, inputs, labels),
                "device": gpus[0].name if on_gpu else "CPU",
                "method": memory.method,
            }
        run_step()  # lets the allocator's free lists settle
        record = {"step_seconds": [], "step_cpu_seconds": []}
        for _ in range(spec["timed_steps"]):
            wall, cpu = time.perf_counter(), time.process_time()
            run_step()
            record["step_cpu_seconds"].append(time.process_time() - cpu)
            record["step_seconds"].append(time.perf_counter() - wall)
        return record


def _serve():
    """Read the number of parallel memory workers, then one JSON job per
    stdin line; measure each job's memory in a fresh child (``workers`` at
    once), then time those with ``timed_steps`` one child at a time; print
    one JSON result line per job, in order."""
    import traceback

    import keras  # noqa: F401  (imported once here, shared by every child)
    import tensorflow  # noqa: F401

    import tess_keras.models  # noqa: F401

    lines = [line for line in sys.stdin if line.strip()]
    workers = max(1, int(json.loads(lines[0]))) if lines else 1
    jobs = [json.loads(line) for line in lines[1:]]
    records = [
        {"rule": spec["rule"], "time_steps": spec["time_steps"], "batch_size": spec["batch_size"],
         "step_seconds": [], "step_cpu_seconds": []}
        for spec in jobs
    ]
    memory_tasks = [(index, "memory") for index in range(len(jobs))]
    timing_tasks = [(index, "timing") for index, spec in enumerate(jobs) if spec["timed_steps"] > 0]
    for tasks, at_once in ((memory_tasks, workers), (timing_tasks, 1)):
        for first in range(0, len(tasks), at_once):
            running = [(index, *_fork_child(jobs[index], task, traceback)) for index, task in tasks[first : first + at_once]]
            for index, pid, read_end in running:
                records[index].update(_collect(jobs[index], pid, read_end))
    for record in records:
        print(json.dumps(record), flush=True)


def _job_name(spec):
    return f"{spec['rule']['name']} T={spec['time_steps']}"


def _collect(spec, pid, read_end):
    """Wait for a child; its record, or an ``error`` record if it died."""
    with os.fdopen(read_end) as result:
        text = result.read()
    _, status = os.waitpid(pid, 0)
    if text:
        return json.loads(text)
    code = os.waitstatus_to_exitcode(status)
    return {"job": _job_name(spec), "error": f"the measuring process died (exit {code}; -9 usually means out of memory)"}


def _fork_child(spec, task, traceback):
    """Fork a child that runs ``task`` on ``spec`` and writes its JSON
    record to a pipe; returns ``(pid, read end of the pipe)``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure, report, leave without cleanup
        os.close(read_end)
        try:
            record = _run(spec, task)
        except BaseException as error:  # noqa: BLE001 (reported to the parent, which raises)
            traceback.print_exc()  # the full story goes to the server's stderr
            record = {"job": _job_name(spec), "error": f"{type(error).__name__}: {error}"}
        with os.fdopen(write_end, "w") as out:
            out.write(json.dumps(record))
        os._exit(0)
    os.close(write_end)
    return pid, read_end


if __name__ == "__main__":
    _serve()
