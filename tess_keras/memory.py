"""Measured peak memory and speed of one compiled training step.

``measure_train_step`` answers "how much memory does one batch of training
take with this rule and this T?" by running the model's real ``train_step``
(under ``tf.function``) on random data and measuring, not modelling:

* CPU: TensorFlow keeps no allocator statistics for the CPU, so the step's
  peak is the process's resident memory high-water mark. After a warm-up
  step (which traces the graph and allocates everything that lives across
  steps) the kernel's high-water mark is reset (``/proc/self/clear_refs``),
  the step runs, and ``peak = VmHWM - VmRSS before the step``. glibc is told
  to serve large blocks with ``mmap`` and give freed memory back at once, so
  the resident set follows the step's live tensors.
* GPU: ``tf.config.experimental.reset_memory_stats`` /
  ``get_memory_info`` of the first GPU: ``peak - current before the step``.

Every configuration runs in its own fresh process, so one measurement never
sees another's graphs or freed-but-cached memory. The processes are forked
from a helper interpreter that has already imported TensorFlow (it does
nothing else before forking), which saves the import time per
configuration. Linux only (``/proc`` and ``fork``).
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys

# glibc settings for the measuring processes: blocks >= 64 KiB come from
# mmap (returned to the kernel on free), the heap is trimmed at once and
# only two arenas keep per-thread caches small.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "65536",
    "MALLOC_TRIM_THRESHOLD_": "0",
    "MALLOC_TOP_PAD_": "0",
    "MALLOC_ARENA_MAX": "2",
}


@dataclasses.dataclass
class StepMeasurement:
    """One configuration's measured training step.

    Attributes:
        rule: the rule's config (``{"name": ..., **get_config()}``).
        time_steps, batch_size: the configuration.
        peak_bytes: memory the step needed on top of what the process held
            before it (bytes).
        baseline_bytes: resident (CPU) or allocated (GPU) bytes just before
            the measured step: interpreter, TensorFlow, model, optimizer.
        step_seconds: wall time of each timed step (after the warm-up).
        step_cpu_seconds: CPU time (all threads) of each timed step; less
            disturbed than wall time when other processes share the cores.
        device: ``"CPU"`` or the GPU's name.
        method: ``"rss-hwm"`` (CPU) or ``"tf-allocator"`` (GPU).
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
    """Measure several configurations, each in its own fresh process.

    The processes start with ``MALLOC_ENV`` so the memory number follows
    the step's live tensors; before timing steps (``timed_steps > 0``) a
    process switches glibc back to keeping freed blocks for reuse (as it
    does by default), because returning every block to the kernel costs
    page faults that would slow the timed steps.

    Args:
        jobs: list of dicts of ``measure_train_step``'s keyword arguments
            (``rule``, ``time_steps``, ``batch_size``, ``input_shape`` and
            optionally ``num_classes``, ``model``, ``timed_steps``,
            ``device``, ``seed``).
        timeout: seconds allowed for all of them together.
        workers: configurations measured at the same time (each still in
            its own process, so memory numbers are unaffected; keep 1 when
            timing steps, as parallel runs share the cores).

    Returns:
        One ``StepMeasurement`` per job, in order.

    Raises:
        MeasurementError: a measuring process failed (e.g. out of memory).
    """
    defaults = {"num_classes": 10, "model": "mcu", "timed_steps": 0, "device": "auto", "seed": 0}
    specs = [_job(**{**defaults, **job}) for job in jobs]
    if not specs:
        return []
    if not os.path.exists("/proc/self/clear_refs"):
        raise MeasurementError("Measuring memory needs Linux (/proc/self/clear_refs); this system has none.")
    return [StepMeasurement(**record) for record in _run_server(specs, MALLOC_ENV, timeout, workers)]


def _run_server(specs, extra_env, timeout, workers):
    """Run the fork server (``python -m tess_keras.memory``) on ``specs``."""
    env = {**os.environ, **extra_env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # Own session, so a timeout stops the server and the child it forked.
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
    in a fresh process; after a warm-up step that traces it, the memory the
    next step needs on top of what was held before is measured (CPU: peak
    resident set via ``/proc``; GPU: TensorFlow's allocator statistics).
    Model weights, optimizer slots and the input batch are held before the
    step and are not counted; everything the step creates is (traces or
    stored activations, gradients, temporaries).

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


def _proc_status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise MeasurementError(f"/proc/self/status has no {field}")


class StepPeak:
    """Peak memory of what runs between ``start()`` and ``peak()``, above the
    level at ``start()``: TensorFlow's allocator statistics on a GPU, the
    process's resident-set high-water mark on the CPU (Linux; run the process
    with ``MALLOC_ENV`` so that the resident set follows the live tensors).

    Args:
        gpu: TensorFlow device name of the GPU to watch (e.g. ``"GPU:0"``),
            or ``None`` for the CPU.
    """

    def __init__(self, gpu=None):
        self.gpu = gpu
        self.method = "tf-allocator" if gpu else "rss-hwm"
        self.baseline = 0

    def start(self):
        """Reset the high-water mark; returns the bytes held now."""
        if self.gpu:
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats(self.gpu)
            self.baseline = tf.config.experimental.get_memory_info(self.gpu)["current"]
        else:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # reset VmHWM to the current resident set
            self.baseline = _proc_status_bytes("VmRSS")
        return self.baseline

    def peak(self):
        """Bytes needed above the baseline since ``start()``."""
        if self.gpu:
            import tensorflow as tf

            return tf.config.experimental.get_memory_info(self.gpu)["peak"] - self.baseline
        return _proc_status_bytes("VmHWM") - self.baseline


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


def _keep_freed_memory():
    """Undo ``MALLOC_ENV`` for timing: glibc's usual large thresholds, so
    freed blocks are reused instead of unmapped and faulted in again."""
    import ctypes

    mallopt = ctypes.CDLL("libc.so.6").mallopt
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's dynamic threshold's maximum
    mallopt(m_trim_threshold, 64 * 2**20)
    mallopt(m_top_pad, 128 * 2**10)


def _measure(spec):
    """Build and warm up one configuration, measure one step's memory, then
    time ``timed_steps`` steps (in a forked child)."""
    import time

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU") if spec["device"] != "cpu" else []
    if spec["device"] == "gpu" and not gpus:
        raise MeasurementError("device='gpu' but TensorFlow sees no GPU.")
    if spec["device"] == "cpu":
        tf.config.set_visible_devices([], "GPU")
    on_gpu = bool(gpus)
    record = {
        "rule": spec["rule"],
        "time_steps": spec["time_steps"],
        "batch_size": spec["batch_size"],
        "peak_bytes": 0,
        "baseline_bytes": 0,
        "step_seconds": [],
        "step_cpu_seconds": [],
        "device": gpus[0].name if on_gpu else "CPU",
        "method": StepPeak("GPU:0" if on_gpu else None).method,
    }
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

        memory = StepPeak("GPU:0" if on_gpu else None)
        baseline = memory.start()
        run_step()
        record.update(peak_bytes=int(memory.peak()), baseline_bytes=int(baseline))

        if spec["timed_steps"] > 0:
            _keep_freed_memory()
            run_step()  # lets the allocator's free lists grow again
            for _ in range(spec["timed_steps"]):
                wall, cpu = time.perf_counter(), time.process_time()
                run_step()
                record["step_cpu_seconds"].append(time.process_time() - cpu)
                record["step_seconds"].append(time.perf_counter() - wall)
    return record


def _serve():
    """Read the number of parallel workers, then one JSON job per stdin
    line; fork a fresh child for each; print one JSON result line per job,
    in order."""
    import traceback

    import keras  # noqa: F401  (imported once here, shared by every child)
    import tensorflow  # noqa: F401

    import tess_keras.models  # noqa: F401

    lines = [line for line in sys.stdin if line.strip()]
    workers = max(1, int(json.loads(lines[0]))) if lines else 1
    jobs = [json.loads(line) for line in lines[1:]]
    # Up to `workers` children at once; results are printed in job order.
    for first in range(0, len(jobs), workers):
        running = [(spec, *_fork_child(spec, traceback)) for spec in jobs[first : first + workers]]
        for spec, pid, read_end in running:
            with os.fdopen(read_end) as result:
                text = result.read()
            _, status = os.waitpid(pid, 0)
            if not text:
                code = os.waitstatus_to_exitcode(status)
                text = json.dumps(
                    {
                        "job": f"{spec['rule']['name']} T={spec['time_steps']}",
                        "error": f"the measuring process died (exit {code}; -9 usually means out of memory)",
                    }
                )
            print(text, flush=True)


def _fork_child(spec, traceback):
    """Fork a child that measures ``spec`` and writes its JSON record to a
    pipe; returns ``(pid, read end of the pipe)``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure, report, leave without cleanup
        os.close(read_end)
        try:
            record = _measure(spec)
        except BaseException as error:  # noqa: BLE001 (reported to the parent, which raises)
            traceback.print_exc()  # the full story goes to the server's stderr
            record = {"job": f"{spec['rule']['name']} T={spec['time_steps']}", "error": f"{type(error).__name__}: {error}"}
        with os.fdopen(write_end, "w") as out:
            out.write(json.dumps(record))
        os._exit(0)
    os.close(write_end)
    return pid, read_end

if __name__ == "__main__":
    _serve()
