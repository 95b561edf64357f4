"""Training on several devices and machines with ``tf.distribute``.

Three strategies, chosen by name (``tess train --strategy``):

* ``default``: one device (the first GPU if there is one, else the CPU).
* ``mirrored``: ``tf.distribute.MirroredStrategy`` over every local GPU
  (every logical CPU device when there is no GPU). Each replica gets an
  equal slice of the global batch.
* ``multi-worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over
  several machines, each described by the standard ``TF_CONFIG``
  environment variable (``{"cluster": {"worker": ["host:port", ...]},
  "task": {"type": "worker", "index": i}}``). Worker 0 (or the task of type
  ``chief``) is the chief: it alone writes files.

Every rule hands the optimizer updates *summed* over the batch (and time).
Each replica computes that sum over its own slice; the optimizer all-reduces
gradients with ``SUM`` before applying them (Keras 3's TensorFlow optimizer),
so the applied update is the sum over the global batch: the same update a
single device computes for that batch, up to float rounding. Metrics are
Keras ``SyncOnRead`` variables summed over replicas when read.

Precision (``--precision``): ``float32``; ``mixed_float16`` or
``mixed_bfloat16`` run the synapses (convolutions, matmuls, the filter
gradients of TESS/S-TLLR, BPTT's backward pass) in 16 bits while weights,
membrane potentials, spikes, thresholds, traces and accumulated updates stay
float32 (see the README). Under ``mixed_float16`` the optimizer is Keras's
``LossScaleOptimizer``: every rule multiplies its error signal by the
dynamic loss scale so that small learning signals survive float16, and
steps whose updates overflow are skipped (on every replica together).

XLA (``--jit``): the rule's gradient computation of each replica is compiled
with ``jit_compile=True``; the all-reduce and the optimizer step stay
outside XLA, so the same code runs on CPUs, GPUs and any strategy.
"""

import contextlib
import glob
import json
import os

STRATEGIES = ("default", "mirrored", "multi-worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# Strategies made in this process, by (name, devices): two strategies over
# the same devices would hand out clashing collective-op keys.
_strategies = {}


class DistributeError(ValueError):
    """A strategy or precision setting is unusable; the message says why and how to fix it."""


# -- strategies ---------------------------------------------------------------------


def read_tf_config(environ=None):
    """The parsed ``TF_CONFIG`` of this process, checked.

    Returns:
        ``(cluster, task_type, task_index)``.

    Raises:
        DistributeError: ``TF_CONFIG`` is missing or malformed.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG", "")
    example = (
        'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
    )
    if not raw.strip():
        raise DistributeError(
            "--strategy multi-worker needs the TF_CONFIG environment variable, which lists every worker and says "
            f"which one this process is. Set it on each machine, e.g. {example} (index 1 on the second), or use "
            "--strategy mirrored for the GPUs of one machine."
        )
    try:
        config = json.loads(raw)
        cluster = config["cluster"]
        task_type = config["task"]["type"]
        task_index = int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise DistributeError(
            f"TF_CONFIG is not valid ({type(error).__name__}: {error}); it must be JSON with a 'cluster' and a "
            f"'task' with 'type' and 'index', e.g. {example}."
        ) from None
    if not isinstance(cluster, dict) or not any(cluster.get(kind) for kind in ("worker", "chief")):
        raise DistributeError(f"TF_CONFIG's cluster lists no workers; e.g. {example}.")
    from tess_keras.cluster import split_address

    for kind in ("chief", "worker"):
        entries = cluster.get(kind) or []
        if not isinstance(entries, list):
            raise DistributeError(f"TF_CONFIG's cluster {kind!r} must be a list of host:port addresses, e.g. {example}.")
        for address in entries:
            split_address(address)
    members = cluster.get(task_type)
    if not isinstance(members, list) or not 0 <= task_index < len(members):
        raise DistributeError(
            f"TF_CONFIG names this process {task_type} {task_index}, but the cluster has "
            f"{len(members) if isinstance(members, list) else 'no'} {task_type} entries; fix 'task' in TF_CONFIG."
        )
    if task_type not in ("chief", "worker"):
        raise DistributeError(
            f"TF_CONFIG names this process {task_type} {task_index}; tess train runs as a 'worker' (or 'chief') task."
        )
    return cluster, task_type, task_index


def _nvidia_gpu_present():
    """True when the machine has an NVIDIA GPU, whatever TensorFlow makes of it:
    the driver lists one, or a GPU device node exists (containers). Not
    ``nvidia-smi`` on the PATH: images carry it without a GPU."""
    gpus = "/proc/driver/nvidia/gpus"
    return (os.path.isdir(gpus) and bool(os.listdir(gpus))) or bool(glob.glob("/dev/nvidia[0-9]*"))


def gpu_status():
    """The GPUs TensorFlow can use, and why it uses none on a machine that has one.

    Returns:
        ``(gpus, problem)``: the physical GPU device names, and ``None`` or a
        one-paragraph explanation with the fix when the machine has an NVIDIA
        GPU that TensorFlow cannot use (training would silently run on the CPU).
    """
    import tensorflow as tf

    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    if gpus or not _nvidia_gpu_present():
        return gpus, None
    if not tf.test.is_built_with_cuda():
        return gpus, (
            "this machine has an NVIDIA GPU, but the installed TensorFlow is a CPU-only build (tensorflow-cpu), "
            "so training runs on the CPU. Install the CUDA build: pip uninstall -y tensorflow-cpu && "
            "pip install -e '.[gpu]'."
        )
    return gpus, (
        "this machine has an NVIDIA GPU, but TensorFlow cannot use it (its CUDA libraries or the driver are "
        "missing or do not match), so training runs on the CPU. Install TensorFlow's CUDA libraries with "
        "pip install -e '.[gpu]' (tensorflow[and-cuda]) and check that nvidia-smi lists the GPU."
    )


def local_devices():
    """Devices a ``mirrored`` strategy uses: every GPU, else every logical CPU."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def make_strategy(name, devices=None, cluster_timeout=None, notify=None):
    """A ``tf.distribute.Strategy`` by name.

    Create it before running any other TensorFlow op in the process
    (``multi-worker`` starts this worker's collective-ops server). Asking
    again for the same strategy returns the same object.

    Args:
        name: ``default``, ``mirrored`` or ``multi-worker``.
        devices: for ``mirrored``, the devices to use (default: every local
            GPU, else every logical CPU device).
        cluster_timeout: for ``multi-worker``, seconds to wait for the other
            workers (default ``tess_keras.cluster.DEFAULT_TIMEOUT``).
        notify: for ``multi-worker``, called with a line saying which
            workers it waits for when that takes a while (default: stderr).

    Raises:
        DistributeError: unknown name, or ``multi-worker`` without a valid
            ``TF_CONFIG``; ``tess_keras.cluster.ClusterJoinError`` when the
            cluster is not formed in time or SIGINT/SIGTERM stop the wait.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise DistributeError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        key = (name, tuple(devices or local_devices()))
        if key not in _strategies:
            _strategies[key] = tf.distribute.MirroredStrategy(devices=list(key[1]))
    else:
        from tess_keras import cluster

        key = (name,)  # a process joins one cluster only
        if key not in _strategies:
            tf_cluster, task_type, task_index = read_tf_config()
            timeout = cluster.DEFAULT_TIMEOUT if cluster_timeout is None else cluster_timeout
            _strategies[key] = cluster.join(
                tf.distribute.MultiWorkerMirroredStrategy, tf_cluster, task_type, task_index, timeout, notify
            )
    return _strategies[key]


def worker_info(strategy):
    """``(task_type, task_index, is_chief)`` of this process under ``strategy``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return "worker", 0, True
    task_type, task_index = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        chief = task_type == "chief"
    else:
        chief = task_type == "worker" and task_index == 0
    return task_type, task_index, chief


def chief_by_config(name, environ=None):
    """Whether this process will be the chief of strategy ``name``, read from
    ``TF_CONFIG`` before joining any cluster (``worker_info`` needs the strategy).

    Args:
        name: a strategy name (``STRATEGIES``).
        environ: the environment (default ``os.environ``).
    """
    if name != "multi-worker":
        return True
    cluster, task_type, task_index = read_tf_config(environ)
    if cluster.get("chief"):
        return task_type == "chief"
    return task_type == "worker" and task_index == 0


def is_chief(strategy):
    """True for the one process that writes run files (checkpoints, metrics, the model)."""
    return worker_info(strategy)[2]


def num_workers(strategy):
    """Machines (processes) taking part in ``strategy``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")))


def same_on_all_workers(strategy, values):
    """True when every worker passes the same small integers ``values``
    (e.g. the epoch and batch a run resumes from); a collective, so every
    worker must call it."""
    import tensorflow as tf

    if num_workers(strategy) == 1:
        return True
    local = tf.constant([float(v) for v in values], tf.float32)
    gathered = strategy.gather(strategy.run(lambda: local[None]), axis=0).numpy()
    return bool((gathered == gathered[0]).all())


# -- precision ----------------------------------------------------------------------


def check_precision(name):
    if name not in PRECISIONS:
        raise DistributeError(f"unknown precision {name!r}; choose one of: {', '.join(PRECISIONS)}.")


@contextlib.contextmanager
def precision_policy(name):
    """Build models inside this block to give them the dtype policy ``name``.

    The previous global Keras policy is restored on exit; layers keep the
    policy they were created with.
    """
    import keras

    check_precision(name)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# -- data ------------------------------------------------------------------------------


def distribute_dataset(strategy, dataset):
    """Split a dataset of *global* batches among the strategy's replicas.

    Workers shard by data (``AutoShardPolicy.DATA``: the pipeline reads
    arrays, not files): every global batch is cut into one slice per replica
    on every worker, so all workers run the same number of steps (a replica
    may get an empty slice of a last, short batch).
    """
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1 and num_workers(strategy) == 1:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


# -- steps -------------------------------------------------------------------------------


def _agree_on_finite(grads):
    """Make every replica's gradients non-finite if any replica's are, so a
    ``LossScaleOptimizer`` skips the step (and lowers its scale) on all of
    them together instead of letting the replicas' weights drift apart."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return grads
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    bad_replicas = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    poison = tf.where(bad_replicas > 0, float("nan"), 0.0)
    return [g + tf.cast(poison, g.dtype) for g in grads]


def make_train_step(model, strategy, jit_compile=False):
    """One training step over a distributed global batch.

    Returns ``step(batch) -> logs``: the running ``loss`` and ``accuracy``
    over all replicas (and workers) and ``samples``, the global batch size.
    Each replica asks the model's rule for its updates (summed over its
    slice), the optimizer all-reduces them (SUM) and applies them once.

    Args:
        model: a compiled ``SpikingSequential`` built in ``strategy.scope()``.
        strategy: the ``tf.distribute.Strategy``.
        jit_compile: compile each replica's gradient computation with XLA.
    """
    import keras
    import tensorflow as tf

    # The steps hold no Python control flow on tensors: no AutoGraph needed.
    @tf.autograph.experimental.do_not_convert
    def gradients(inputs, labels):
        return model.rule.compute_gradients(model, inputs, labels)

    if jit_compile:
        gradients = tf.function(gradients, jit_compile=True, reduce_retracing=True)
    loss_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    @tf.autograph.experimental.do_not_convert
    def replica_step(inputs, labels):
        grads, cross_entropy_sum, logits_sum = gradients(inputs, labels)
        if loss_scaled:
            grads = _agree_on_finite(grads)
        model.optimizer.apply(grads, model.trainable_variables)
        model._update_metrics(cross_entropy_sum, labels, logits_sum, inputs)
        return tf.shape(labels)[0]

    @tf.function(reduce_retracing=True)
    @tf.autograph.experimental.do_not_convert
    def step(batch):
        sizes = strategy.run(replica_step, args=tuple(batch[:2]))
        logs = {metric.name: metric.result() for metric in model.metrics}
        logs["samples"] = strategy.reduce(tf.distribute.ReduceOp.SUM, sizes, axis=None)
        return logs

    return step


def make_test_step(model, strategy, jit_compile=False):
    """One evaluation step over a distributed global batch (updates the
    model's metrics; read them with ``metric.result()`` afterwards)."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def replica_step(inputs, labels):
        logits_sum, cross_entropy_sum, _ = model.run_sequence(inputs, labels)
        model._update_metrics(cross_entropy_sum, labels, logits_sum, inputs)
        return tf.shape(labels)[0]

    if jit_compile:
        replica_step = tf.function(replica_step, jit_compile=True, reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    @tf.autograph.experimental.do_not_convert
    def step(batch):
        sizes = strategy.run(replica_step, args=tuple(batch[:2]))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, sizes, axis=None)

    return step

