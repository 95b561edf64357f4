"""Strategy checks that need a fresh TensorFlow process (run by test_distribute.py).

TensorFlow's devices and multi-worker collectives are fixed when its runtime
starts, so these checks cannot share the pytest process with other tests.

    python distribute_checks.py steps
        Splits the CPU into 2 logical devices and compares, for each rule,
        one MirroredStrategy step with a single-device step on the same
        global batch; checks XLA against no XLA and mixed precision.
    python distribute_checks.py resume WORK_DIR
        The same 2 devices: a `training.train` run under MirroredStrategy,
        stopped after one epoch and resumed, against an uninterrupted one.
    python distribute_checks.py worker OUT LIMIT_TRAIN
        One worker of a MultiWorkerMirroredStrategy run (TF_CONFIG set by the
        caller): records which samples this worker's replica gets from a
        distributed dataset, then trains one epoch of digits.

Each mode prints one line ``RESULT <json>``.
"""

import json
import sys

import numpy as np

T, SHAPE, CLASSES, BATCH = 3, (6, 6, 2), 4, 10


def tiny_model(rule, optimizer):
    """Conv -> max-pool -> dense -> readout: every kind of block, small graph."""
    import keras

    from tess_keras.layers import Readout, SpikingConv2D, SpikingDense
    from tess_keras.models import SpikingSequential

    model = SpikingSequential(
        [
            SpikingConv2D(4, 3, lsg_pool=2),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            SpikingDense(6),
            Readout(CLASSES),
        ],
        rule=rule,
    )
    model.build((None, T) + SHAPE)
    model.compile(optimizer=optimizer)
    model.optimizer.build(model.trainable_variables)
    return model


def batch_data(seed=0):
    rng = np.random.default_rng(seed)
    # Spikes dense enough that every layer fires.
    x = (rng.random((BATCH, T) + SHAPE) < 0.6).astype(np.float32)
    y = rng.integers(0, CLASSES, BATCH).astype(np.int32)
    return x, y


def one_step(model, strategy, x, y, jit_compile=False):
    import tensorflow as tf

    from tess_keras import distribute

    dataset = distribute.distribute_dataset(strategy, tf.data.Dataset.from_tensor_slices((x, y)).batch(len(y)))
    step = distribute.make_train_step(model, strategy, jit_compile)
    logs = step(next(iter(dataset)))
    return {k: float(v) for k, v in logs.items()}


def max_difference(a, b):
    return max(float(np.max(np.abs(p - q))) for p, q in zip(a, b))


def min_change(after, before):
    return min(float(np.max(np.abs(p - q))) for p, q in zip(after, before))


def split_cpu():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def check_steps():
    split_cpu()
    import keras
    import tensorflow as tf

    from tess_keras import distribute
    from tess_keras.rules.base import loss_scale

    result = {}
    single = tf.distribute.get_strategy()
    mirrored = distribute.make_strategy("mirrored")
    result["replicas"] = mirrored.num_replicas_in_sync
    x, y = batch_data()

    # 1. One mirrored step == one single-device step on the same global batch.
    # SGD keeps the update linear in the gradients, so the weights compare
    # the summed updates themselves (Adam's first step is about sign(g)).
    for rule in ("tess", "stllr", "bptt"):
        keras.utils.set_random_seed(1)
        reference = tiny_model(rule, keras.optimizers.SGD(0.5))
        start = reference.get_weights()
        with mirrored.scope():
            model = tiny_model(rule, keras.optimizers.SGD(0.5))
        model.set_weights(start)
        single_logs = one_step(reference, single, x, y)
        mirrored_logs = one_step(model, mirrored, x, y)
        result[f"equal_{rule}"] = {
            "weight_difference": max_difference(model.get_weights(), reference.get_weights()),
            "smallest_change": min_change(reference.get_weights(), start),
            "single_logs": single_logs,
            "mirrored_logs": mirrored_logs,
        }

    # 2. XLA: a jit-compiled step equals the plain one (single device and mirrored).
    for rule in ("tess", "bptt"):
        keras.utils.set_random_seed(2)
        plain = tiny_model(rule, keras.optimizers.SGD(0.5))
        start = plain.get_weights()
        compiled = tiny_model(rule, keras.optimizers.SGD(0.5))
        compiled.set_weights(start)
        plain_logs = one_step(plain, single, x, y)
        jit_logs = one_step(compiled, single, x, y, jit_compile=True)
        entry = {
            "weight_difference": max_difference(compiled.get_weights(), plain.get_weights()),
            "smallest_change": min_change(plain.get_weights(), start),
            "loss": [plain_logs["loss"], jit_logs["loss"]],
        }
        if rule == "tess":
            with mirrored.scope():
                both = tiny_model(rule, keras.optimizers.SGD(0.5))
            both.set_weights(start)
            one_step(both, mirrored, x, y, jit_compile=True)
            entry["mirrored_weight_difference"] = max_difference(both.get_weights(), plain.get_weights())
        result[f"jit_{rule}"] = entry

    # 3. Mixed precision under the strategy: float32 state, loss-scaled
    # updates, finite weights that moved.
    for precision, rules in (("mixed_float16", ("tess", "stllr", "bptt")), ("mixed_bfloat16", ("tess",))):
        for rule in rules:
            keras.utils.set_random_seed(3)
            with mirrored.scope(), distribute.precision_policy(precision):
                model = tiny_model(rule, keras.optimizers.Adam(1e-2))
            start = model.get_weights()
            losses = [one_step(model, mirrored, x, y)["loss"] for _ in range(2)]
            weights = model.get_weights()
            spiking = model.spiking_layers[0]
            states = model.initial_states(2)
            result[f"{precision}_{rule}"] = {
                "finite": bool(all(np.isfinite(w).all() for w in weights) and np.isfinite(losses).all()),
                "changed": min_change(weights, start),
                "optimizer": type(model.optimizer).__name__,
                "applied_steps": int(model.optimizer.iterations.numpy()),
                "compute_dtype": spiking.compute_dtype,
                "state_dtype": states[0][0].dtype.name,
                "weight_dtype": spiking.kernel.dtype,
                "loss": losses,
            }
    # The global policy is back to float32 after the precision block.
    result["policy_after"] = keras.mixed_precision.global_policy().name

    # 4. Mixed precision gives float32's updates: per weight tensor, the
    # cosine similarity and the norm ratio (after taking out the loss scale
    # that the float16 rule's updates carry), same weights and batch.
    for precision in ("mixed_float16", "mixed_bfloat16"):
        for rule in ("tess", "stllr", "bptt"):
            keras.utils.set_random_seed(4)
            reference = tiny_model(rule, keras.optimizers.SGD(0.1))
            with distribute.precision_policy(precision):
                mixed = tiny_model(rule, keras.optimizers.SGD(0.1))
            mixed.set_weights(reference.get_weights())
            exact = reference.rule.compute_gradients(reference, x, y)[0]
            approximate = mixed.rule.compute_gradients(mixed, x, y)[0]
            scale = loss_scale(mixed)
            scale = 1.0 if scale is None else float(scale)
            result[f"agreement_{precision}_{rule}"] = {
                variable.path.split("/", 1)[1]: update_agreement(a, np.asarray(b, np.float64) / scale)
                for variable, a, b in zip(reference.trainable_variables, exact, approximate)
            }
    return result


def update_agreement(exact, approximate):
    """``[cosine similarity, norm ratio]`` of two updates; None when the second overflowed."""
    a = np.ravel(np.asarray(exact, np.float64))
    b = np.ravel(np.asarray(approximate, np.float64))
    if not np.isfinite(b).all():
        return None
    norms = np.linalg.norm(a), np.linalg.norm(b)
    return [float(a @ b / (norms[0] * norms[1])), float(norms[1] / norms[0])]


def check_resume(work_dir):
    split_cpu()
    from tess_keras import distribute, training

    # Checkpoint + resume under the strategy: 1 epoch, then resume to 2,
    # against 2 uninterrupted epochs. Whole batches only: one trace per step.
    def run(out, epochs, resume=False):
        options = {"dataset": "digits", "epochs": epochs, "batch_size": 24, "limit_train": 48, "limit_test": 24,
                   "strategy": "mirrored", "out": out}
        config = training.resolve_config(options)
        if resume:
            config = training.check_compatible(training.load_saved_config(out), {"epochs": epochs})
            config.out = out
        return training.train(config, resume=resume)

    straight = run(f"{work_dir}/straight", 2)
    run(f"{work_dir}/resumed", 1)
    resumed = run(f"{work_dir}/resumed", 2, resume=True)
    return {
        "replicas": distribute.make_strategy("mirrored").num_replicas_in_sync,
        "straight": straight["weights_sha256"],
        "resumed": resumed["weights_sha256"],
        "straight_metrics": open(f"{work_dir}/straight/metrics.csv").read().splitlines(),
        "resumed_metrics": open(f"{work_dir}/resumed/metrics.csv").read().splitlines(),
    }


def check_worker(out, limit_train):
    import tensorflow as tf

    from tess_keras import distribute, training

    strategy = distribute.make_strategy("multi-worker")
    task_type, task_index, chief = distribute.worker_info(strategy)
    # Which samples reach this worker: ids 0..49 in global batches of 8.
    ids = tf.data.Dataset.range(50).batch(8)
    seen = []
    for batch in distribute.distribute_dataset(strategy, ids):
        local = strategy.experimental_local_results(batch)
        seen.append(sorted(int(i) for part in local for i in part.numpy()))
    config = training.resolve_config(
        {"dataset": "digits", "epochs": 1, "batch_size": 64, "limit_train": limit_train, "limit_test": 128,
         "strategy": "multi-worker", "out": out}
    )
    summary = training.train(config)
    return {
        "task": [task_type, task_index],
        "chief": chief,
        "workers": distribute.num_workers(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "batches_seen": seen,
        "summary": summary,
    }


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "steps":
        report = check_steps()
    elif mode == "resume":
        report = check_resume(sys.argv[2])
    elif mode == "worker":
        report = check_worker(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("RESULT " + json.dumps(report), flush=True)
