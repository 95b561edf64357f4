"""The measuring side of ``tess_keras.memory``: the fork server
(``python -m tess_keras.memory_worker``) that forks one fresh child per
measurement, builds and warms up the configuration there, and measures one
step's peak memory (``StepPeak``) or times steps.

The server reads the number of parallel memory measurements, then one JSON
job per line on stdin, and prints one JSON record per job, in order.
"""

import json
import os
import sys


# Step instances measured per configuration; the figure is their largest
# peak (see ``_run``).
MEASURED_TRACES = 4


class MeasurementError(RuntimeError):
    """A measuring process failed; the message carries its error output."""


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

    if task == "memory":  # one thread runs every op in one order, so the same buffers are live together
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
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
        if task == "memory":
            memory, peaks = StepPeak("GPU:0" if on_gpu else None), []
            for _ in range(MEASURED_TRACES):
                # A fresh tf.function per measurement: each instance fixes for
                # good which kernels may write into their input's buffer, so
                # one instance can need an activation map less than another.
                train_step = tf.function(model.train_step)
                train_step((inputs, labels))["loss"].numpy()  # traces; allocates what lives across steps
                memory.start()
                train_step((inputs, labels))["loss"].numpy()  # .numpy() waits for the step
                peaks.append(int(memory.peak()))
            return {
                "peak_bytes": max(peaks),
                "baseline_bytes": _held_bytes(model, inputs, labels),
                "device": gpus[0].name if on_gpu else "CPU",
                "method": memory.method,
            }
        train_step = tf.function(model.train_step)

        def run_step():
            train_step((inputs, labels))["loss"].numpy()  # .numpy() waits for the step

        run_step()  # traces the graph and allocates what lives across steps
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
