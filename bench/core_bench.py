"""Core benchmark: training memory and throughput of TESS, S-TLLR and BPTT.

Every rule trains the same spiking conv network (32x32x2 frames, two
32-channel SpikingConv2D layers, 10 classes) for T = 5, 10, 20, 40. For each
(rule, T) one fresh process measures the peak memory of one compiled train
step and times a few more (``tess_keras.memory.profile_train_steps``); the
configurations run side by side in one invocation, ordered by T so that all
rules see the same machine load.

Writes ``bench/results/core_bench.csv``, ``core_bench.json`` and
``core_bench.png`` (memory and throughput against T; ``--memory-only``:
``core_bench_memory.*``, memory alone) and prints a Markdown table plus the
goals, met or not:

* TESS memory flat in T (largest / smallest peak over T <= 1.3);
* BPTT / TESS memory >= 5x at T = 20;
* TESS (alpha_post = 0) throughput >= 1.2x BPTT's.

Usage:
    python bench/core_bench.py            # 5 timed steps per configuration
    python bench/core_bench.py --quick    # 1 timed step
    python bench/core_bench.py --memory-only   # no timing (memory figures do not depend on the load)
"""

import argparse
import csv
import datetime
import json
import os
import pathlib
import platform
import sys
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
INPUT_SHAPE = (32, 32, 2)
NUM_CLASSES = 10
TIME_STEPS = (5, 10, 20, 40)
# (label, rule name, rule arguments)
RULES = (
    ("TESS a_post=0", "tess", {"alpha_post": 0.0}),
    ("TESS a_post=+1", "tess", {"alpha_post": 1.0}),
    ("S-TLLR", "stllr", {}),
    ("BPTT", "bptt", {}),
)
FLAT_RATIO = 1.3
MEMORY_GOAL = 5.0
SPEED_GOAL = 1.2


def conv_net():
    """The benchmark network: conv32 - maxpool2 - conv32 - maxpool4 - readout."""
    import keras

    from tess_keras.layers import Readout, SpikingConv2D
    from tess_keras.models import SpikingSequential

    return SpikingSequential(
        [
            SpikingConv2D(32, 3, lsg_pool=2, name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            SpikingConv2D(32, 3, lsg_pool=2, name="conv2"),
            keras.layers.MaxPooling2D(4, name="pool2"),
            keras.layers.Flatten(name="flatten"),
            Readout(NUM_CLASSES, name="readout"),
        ],
        name="bench_conv_net",
    )


def run(batch_size, timed_steps, time_steps=TIME_STEPS):
    """Measure every (rule, T); returns a list of result rows (dicts)."""
    from tess_keras import rules
    from tess_keras.memory import profile_train_steps

    net = conv_net()
    plan = [(label, steps, rules.get(name, **kwargs)) for steps in time_steps for label, name, kwargs in RULES]
    jobs = [
        {
            "rule": rule,
            "time_steps": steps,
            "batch_size": batch_size,
            "input_shape": INPUT_SHAPE,
            "num_classes": NUM_CLASSES,
            "model": net,
            "timed_steps": timed_steps,
            "device": "cpu",
        }
        for _, steps, rule in plan
    ]
    # Memory two at a time (each process has its own figures); timing runs alone.
    measurements = profile_train_steps(jobs, timeout=3600, workers=2)
    rows = []
    for (label, steps, rule), m in zip(plan, measurements):
        rows.append(
            {
                "rule": label,
                "rule_config": json.dumps(m.rule, sort_keys=True),
                "time_steps": steps,
                "batch_size": batch_size,
                "peak_mib": round(m.peak_bytes / 2**20, 2),
                "baseline_mib": round(m.baseline_bytes / 2**20, 1),
                # Fastest of the timed steps: on shared cores the slower ones
                # mostly measure the other jobs.
                "samples_per_s": round(batch_size / min(m.step_seconds), 2) if timed_steps else None,
                "samples_per_cpu_s": round(batch_size / min(m.step_cpu_seconds), 2) if timed_steps else None,
                "median_samples_per_s": round(m.samples_per_second, 2) if timed_steps else None,
                "step_seconds": " ".join(f"{s:.3f}" for s in m.step_seconds),
                "step_cpu_seconds": " ".join(f"{s:.3f}" for s in m.step_cpu_seconds),
            }
        )
    return rows


def goals(rows):
    """The three goals, each with the numbers behind it and met or not."""
    table = {(row["rule"], row["time_steps"]): row for row in rows}
    steps = sorted({row["time_steps"] for row in rows})
    out = []
    for label in ("TESS a_post=0", "TESS a_post=+1"):
        peaks = [table[label, t]["peak_mib"] for t in steps]
        ratio = max(peaks) / min(peaks)
        out.append(
            {
                "goal": f"{label} memory flat in T (max/min <= {FLAT_RATIO})",
                "value": round(ratio, 2),
                "met": ratio <= FLAT_RATIO,
            }
        )
    if 20 in steps:
        for label in ("TESS a_post=+1", "TESS a_post=0"):
            ratio = table["BPTT", 20]["peak_mib"] / table[label, 20]["peak_mib"]
            out.append(
                {
                    "goal": f"BPTT / {label} memory at T=20 >= {MEMORY_GOAL}x",
                    "value": round(ratio, 2),
                    "met": ratio >= MEMORY_GOAL,
                }
            )
    timed = rows[0]["samples_per_s"] is not None
    for key, what in (("samples_per_cpu_s", "per CPU-second"), ("samples_per_s", "per wall second")) if timed else ():
        ratios = [table["TESS a_post=0", t][key] / table["BPTT", t][key] for t in steps]
        out.append(
            {
                "goal": f"TESS a_post=0 / BPTT throughput ({what}) >= {SPEED_GOAL}x at every T",
                "value": [round(r, 2) for r in ratios],
                "met": min(ratios) >= SPEED_GOAL,
            }
        )
    return out


def markdown(rows, goal_rows):
    steps = sorted({row["time_steps"] for row in rows})
    timed = rows[0]["samples_per_s"] is not None
    header = ["rule"] + [f"T={t} MiB" for t in steps] + ([f"T={t} samples/s" for t in steps] if timed else [])
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for label, _, _ in RULES:
        by_t = {row["time_steps"]: row for row in rows if row["rule"] == label}
        cells = [label] + [f"{by_t[t]['peak_mib']:.1f}" for t in steps]
        if timed:
            cells += [f"{by_t[t]['samples_per_s']:.1f} ({by_t[t]['samples_per_cpu_s']:.1f})" for t in steps]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for goal in goal_rows:
        lines.append(f"- {goal['goal']}: {goal['value']} -> {'met' if goal['met'] else 'NOT met'}")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    steps = sorted({row["time_steps"] for row in rows})
    timed = rows[0]["samples_per_s"] is not None
    figure, axes = plt.subplots(1, 2 if timed else 1, figsize=(11 if timed else 5.8, 4.2), squeeze=False)
    memory_axis, speed_axis = axes[0][0], axes[0][1] if timed else None
    for label, _, _ in RULES:
        by_t = {row["time_steps"]: row for row in rows if row["rule"] == label}
        style = {"marker": "o", "linestyle": "--" if label == "BPTT" else "-", "label": label}
        memory_axis.plot(steps, [by_t[t]["peak_mib"] for t in steps], **style)
        if timed:
            speed_axis.plot(steps, [by_t[t]["samples_per_cpu_s"] for t in steps], **style)
    batch = rows[0]["batch_size"]
    memory_axis.set(
        xlabel="time steps T",
        ylabel="peak memory of one train step (MiB)",
        title=f"Train-step memory (batch {batch})",
        yscale="log",
    )
    if timed:
        speed_axis.set(
            xlabel="time steps T",
            ylabel="samples per CPU-second",
            title="Training throughput",
            yscale="log",
        )
    for axis in (memory_axis, speed_axis) if timed else (memory_axis,):
        axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(ScalarFormatter())  # 200, not 2x10^2
        axis.yaxis.set_minor_formatter(NullFormatter())
        axis.set_xticks(steps)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle("32x32x2 input, conv32-pool-conv32 spiking net, CPU", fontsize=10)
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def write_atomic(path, text):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 timed step per configuration instead of 5")
    parser.add_argument("--memory-only", action="store_true", help="measure memory only (writes core_bench_memory.*)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)

    import tess_keras  # noqa: F401  (quiets TensorFlow's C++ log before it loads)
    import tensorflow as tf

    started = time.time()
    load_before = os.getloadavg()
    rows = run(args.batch_size, 0 if args.memory_only else 1 if args.quick else 5)
    goal_rows = goals(rows)
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}",
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "device": "CPU",
        "quick": args.quick,
        "memory_only": args.memory_only,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - started, 1),
        "network": "32x32x2 -> SpikingConv2D(32) -> MaxPool2 -> SpikingConv2D(32) -> MaxPool4 -> Readout(10)",
        "memory": "peak heap bytes one compiled train step allocates and has not yet freed (memray's allocation "
        "tracking, one thread, oneDNN off; fresh process per configuration, largest of 4 fresh tf.function instances)",
        "throughput": "batch / fastest timed step; samples_per_cpu_s uses the process's CPU time (all threads)",
    }

    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / ("core_bench_memory" if args.memory_only else "core_bench")
    fields = list(rows[0])
    tmp = prefix.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, prefix.with_suffix(".csv"))
    write_atomic(prefix.with_suffix(".json"), json.dumps({"info": info, "rows": rows, "goals": goal_rows}, indent=2))
    plot(rows, prefix.with_suffix(".png"))
    print(json.dumps(info, indent=2))
    print(markdown(rows, goal_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
