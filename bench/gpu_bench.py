"""Training throughput and peak memory of TESS, S-TLLR and BPTT on one GPU,
with and without XLA and mixed precision.

GPU mode (default): VGG-9 at the CIFAR10-DVS recipe shape (48x48x2 frames,
T = 10, batch 64, 10 classes) on generated spike frames, every rule x
{float32, mixed_float16} x {XLA off, on}; sized to finish in 10 minutes on
one GPU (``--budget`` seconds; configurations that would start later are
reported as skipped). ``--cpu`` runs the same grid for CI on tiny shapes:
the ``mcu`` network on 16x16x2 frames, T = 4, batch 8.

Each configuration builds a fresh model, runs the training step that
``tess train`` runs (``tess_keras.distribute.make_train_step``: the rule's
updates plus one Adam step), warms up (trace, XLA compile, autotuning), then
times ``--steps`` steps on data already on the device. Peak memory is what
one step needs on top of what was held before it (weights, optimizer slots,
the batch): GPU, TensorFlow's allocator statistics
(``tf.config.experimental.get_memory_info``); CPU, memray's high-water mark
of the heap allocations one extra, untimed step makes
(``tess_keras.memory.StepPeak``).

    python bench/gpu_bench.py                 # GPU: table + bench/results/gpu_bench_gpu.{json,md}
    python bench/gpu_bench.py --cpu           # CPU: bench/results/gpu_bench_cpu.{json,md}
    python bench/gpu_bench.py --smoke         # GPU mode's VGG-9 on the CPU, tiny batch: bench/results/gpu_bench_smoke.*
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RULES = ("tess", "stllr", "bptt")
PRECISIONS = ("float32", "mixed_float16")

GPU_SHAPE = dict(input_shape=(48, 48, 2), time_steps=10, batch_size=64, num_classes=10, model="vgg9")
# CI-sized: the Cortex-M network (conv16-conv32-conv32), not VGG-9, whose
# 64-512-channel layers take seconds per step on a CPU (minutes under XLA).
CPU_SHAPE = dict(input_shape=(16, 16, 2), time_steps=4, batch_size=8, num_classes=10, model="mcu")
# --smoke: the GPU mode's network and frames, as little of them as runs every layer.
SMOKE_SHAPE = dict(GPU_SHAPE, time_steps=2, batch_size=2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU (CI-sized)")
    parser.add_argument(
        "--smoke", action="store_true",
        help="the GPU mode's network (VGG-9, 48x48x2) on the CPU at batch 2, T = 2, one step: checks its code path",
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (GPU 5, CPU 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (GPU 2, CPU 1)")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds; later configurations are skipped")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated rules")
    parser.add_argument("--out", default=None, help="result files prefix (default bench/results/gpu_bench_{gpu,cpu})")
    parser.add_argument("--density", type=float, default=0.15, help="fraction of generated frame pixels that spike")
    args = parser.parse_args(argv)
    if args.smoke:
        args.cpu = True
        args.steps = args.warmup = 1
    args.steps = args.steps or (2 if args.cpu else 5)
    args.warmup = args.warmup or (1 if args.cpu else 2)
    args.rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = [r for r in args.rules if r not in RULES]
    if unknown:
        parser.error(f"unknown rule(s) {', '.join(unknown)}; choose from {', '.join(RULES)}")
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    return args


def configurations(rules):
    """Most informative first: float32 without XLA, then mixed, then XLA."""
    grid = []
    for jit in (False, True):
        for precision in PRECISIONS:
            for rule in rules:
                grid.append({"rule": rule, "precision": precision, "jit": jit})
    return grid


# -- one configuration ---------------------------------------------------------------------


def generated_batch(shape, density, seed=0):
    """Random spike frames and labels, on the default device."""
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(seed)
    frames = (shape["batch_size"], shape["time_steps"]) + tuple(shape["input_shape"])
    inputs = tf.cast(generator.uniform(frames) < density, tf.float32)
    labels = generator.uniform((shape["batch_size"],), 0, shape["num_classes"], dtype=tf.int32)
    return inputs, labels


def run_configuration(config, shape, args, memory):
    import keras
    import tensorflow as tf

    from tess_keras import distribute, models

    keras.utils.set_random_seed(0)
    strategy = tf.distribute.get_strategy()
    with distribute.precision_policy(config["precision"]):
        model = models.build_model(shape["model"], shape["input_shape"], shape["num_classes"], config["rule"])
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.optimizer.build(model.trainable_variables)
    step = distribute.make_train_step(model, strategy, jit_compile=config["jit"])
    batch = generated_batch(shape, args.density)

    started = time.perf_counter()
    for _ in range(args.warmup):
        logs = step(batch)
    float(logs["loss"])  # wait for the device
    warmup_seconds = time.perf_counter() - started

    # One untimed step measures the memory (memray's tracking on the CPU
    # would slow the timed ones).
    baseline = memory.start()
    float(step(batch)["loss"])
    peak = memory.peak()
    seconds = []
    for _ in range(args.steps):
        started = time.perf_counter()
        logs = step(batch)
        loss = float(logs["loss"])  # forces the step to finish
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    result = {
        **config,
        "status": "ok",
        "samples_per_second": shape["batch_size"] / median,
        "step_ms": 1000.0 * median,
        "peak_step_mib": peak / 2**20,
        "baseline_mib": baseline / 2**20,
        "warmup_seconds": warmup_seconds,
        "loss": loss,
        "applied_steps": int(model.optimizer.iterations.numpy()),
    }
    del model, step, batch
    keras.backend.clear_session()
    return result


# -- reporting ------------------------------------------------------------------------------


def table(results, shape, device):
    name = {"vgg9": "VGG-9", "mcu": "mcu network"}.get(shape["model"], shape["model"])
    header = (
        f"{name}, input {'x'.join(map(str, shape['input_shape']))}, T={shape['time_steps']}, "
        f"batch {shape['batch_size']}, {device}"
    )
    lines = [
        header,
        "",
        "| rule | precision | XLA | samples/s | step ms | step peak MiB | warm-up s | status |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r["status"] == "ok":
            numbers = (
                f"{r['samples_per_second']:.1f} | {r['step_ms']:.1f} | {r['peak_step_mib']:.1f} | "
                f"{r['warmup_seconds']:.1f}"
            )
        else:
            numbers = "- | - | - | -"
        lines.append(
            f"| {r['rule']} | {r['precision']} | {'on' if r['jit'] else 'off'} | {numbers} | {r['status']} |"
        )
    return "\n".join(lines) + "\n"


def write_results(prefix, payload, text):
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for suffix, data in ((".json", json.dumps(payload, indent=2) + "\n"), (".md", text)):
        path = prefix.with_name(prefix.name + suffix)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(data)
        os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"

    import tensorflow as tf

    from tess_keras.memory import StepPeak

    # Every configuration traces a step function of its own, by design; TF's
    # retracing warning counts them as one function retracing.
    tf.get_logger().setLevel("ERROR")
    gpus = tf.config.list_physical_devices("GPU")
    if args.cpu:
        shape, memory = (SMOKE_SHAPE if args.smoke else CPU_SHAPE), StepPeak()
        device = f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    else:
        if not gpus:
            from tess_keras.distribute import gpu_status

            problem = gpu_status()[1] or "this machine has no GPU that TensorFlow can see; run it on one."
            sys.exit(f"gpu_bench: {problem} For CI-sized numbers on the CPU, use --cpu.")
        shape, memory = GPU_SHAPE, StepPeak("GPU:0")
        for gpu in gpus:  # allocate as needed, so other configurations' pools do not count
            tf.config.experimental.set_memory_growth(gpu, True)
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"GPU {details.get('device_name', gpus[0].name)}"

    mode = "smoke" if args.smoke else "cpu" if args.cpu else "gpu"
    prefix = Path(args.out) if args.out else RESULTS / f"gpu_bench_{mode}"
    started = time.perf_counter()
    results = []
    for config in configurations(args.rules):
        elapsed = time.perf_counter() - started
        name = f"{config['rule']} {config['precision']} XLA {'on' if config['jit'] else 'off'}"
        if elapsed > args.budget:
            results.append({**config, "status": f"skipped (budget {args.budget:.0f} s spent)"})
            print(f"{name}: skipped, {elapsed:.0f} s of the {args.budget:.0f} s budget spent", flush=True)
            continue
        try:
            result = run_configuration(config, shape, args, memory)
        except Exception as error:  # one failing configuration must not hide the others
            message = str(error).strip().splitlines()
            result = {**config, "status": f"failed: {type(error).__name__}: {message[0] if message else ''}"[:200]}
        results.append(result)
        if result["status"] == "ok":
            print(
                f"{name}: {result['samples_per_second']:.1f} samples/s, step {result['step_ms']:.1f} ms, "
                f"peak {result['peak_step_mib']:.1f} MiB (warm-up {result['warmup_seconds']:.1f} s)",
                flush=True,
            )
        else:
            print(f"{name}: {result['status']}", flush=True)

    text = table(results, shape, device)
    payload = {
        "device": device,
        "shape": shape,
        "steps": args.steps,
        "warmup": args.warmup,
        "memory_method": memory.method,
        "tensorflow": tf.__version__,
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    write_results(prefix, payload, text)
    print()
    print(text)
    print(f"total {payload['seconds']:.0f} s; written {prefix}.json and {prefix}.md")


if __name__ == "__main__":
    main()
