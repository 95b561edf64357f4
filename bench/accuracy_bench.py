"""Accuracy benchmark: TESS, S-TLLR, BPTT and frozen hidden layers on digits, mnist and mnist-dvs.

Every configuration trains the ``mcu`` network through the library's own
training loop (``tess_keras.training.train`` with a ``TrainConfig``), so it
uses the same data splits, validation protocol and learning-rate schedule as
``tess train``. Per configuration and seed it records the test accuracy, the
epoch of the best validation accuracy and the seconds per epoch on this
machine; per configuration it reports mean +- std over the seeds.

Configurations:

* ``tess`` (alpha_post and lsg_source at the recipe's / rule's defaults),
  ``stllr``, ``bptt``, and ``frozen``: TESS with every spiking (hidden) layer
  frozen, so only the readout learns (as in tests/test_learning.py);
* ablations of TESS on mnist and mnist-dvs: alpha_post in {-1, 0, +1} and
  lsg_source in {block, layer}. The recipe's alpha_post (+1) with the rule's
  default lsg_source is the ``tess`` row itself, so the ablations add
  ``tess a_post=-1``, ``tess a_post=0`` and ``tess lsg=<the other source>``.

Goals (issue 13), reported met or not on mnist and mnist-dvs: TESS within 1.5
points of BPTT, and at least 3 points above frozen hidden layers; and whether
``lsg_source="layer"`` beats ``"block"`` by at least 1 point on both.

Writes ``accuracy_bench.json`` (every run, the settings used, the summary),
``accuracy_bench.md`` (tables and goals) and ``accuracy_bench.png`` to
``--out`` after every run, so a run cut short keeps what it measured;
``--resume`` skips the runs already in the JSON.

Usage:
    python bench/accuracy_bench.py                       # everything: 3 seeds, recipe epochs
    python bench/accuracy_bench.py --datasets mnist --seeds 1 --epochs 5 --limit-train 1000
    python bench/accuracy_bench.py --rules tess,bptt --no-ablations --resume
"""

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import sys
import tempfile
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DATASETS = ("digits", "mnist", "mnist-dvs")
RULES = ("tess", "stllr", "bptt", "frozen")
ABLATION_DATASETS = ("mnist", "mnist-dvs")
GOAL_DATASETS = ("mnist", "mnist-dvs")
BPTT_GAP = 1.5  # points: TESS at most this far below BPTT
FROZEN_MARGIN = 3.0  # points: TESS at least this far above frozen hidden layers
LSG_MARGIN = 1.0  # points: "layer" must beat "block" by this much on both to become the default


@dataclasses.dataclass(frozen=True)
class Variant:
    """One trained configuration.

    Attributes:
        label: name in the tables (``tess``, ``frozen``, ``tess a_post=-1``...).
        rule: the training rule (``tess``, ``stllr``, ``bptt``).
        alpha_post: the TESS / S-TLLR alpha_post (None: the dataset's recipe).
        lsg_source: TESS's ``lsg_source`` (None: the rule's default).
        frozen: freeze every spiking layer (only the readout learns).
    """

    label: str
    rule: str
    alpha_post: float | None = None
    lsg_source: str | None = None
    frozen: bool = False


def main_variants(rules):
    table = {
        "tess": Variant("tess", "tess"),
        "stllr": Variant("stllr", "stllr"),
        "bptt": Variant("bptt", "bptt"),
        "frozen": Variant("frozen", "tess", frozen=True),
    }
    return [table[name] for name in rules]


def default_lsg_source():
    """The ``lsg_source`` a plain ``tess train`` uses (``TrainConfig``'s, else the rule's)."""
    from tess_keras import rules, training

    default = {f.name: f.default for f in dataclasses.fields(training.TrainConfig)}.get("lsg_source")
    return default if isinstance(default, str) else rules.TESS().lsg_source


def other_lsg_source():
    return "layer" if default_lsg_source() == "block" else "block"


def ablation_variants():
    """alpha_post -1 and 0 (the ``tess`` row is +1), and the other lsg_source (at the recipe's alpha_post)."""
    return [
        Variant("tess a_post=-1", "tess", alpha_post=-1.0),
        Variant("tess a_post=0", "tess", alpha_post=0.0),
        Variant(f"tess lsg={other_lsg_source()}", "tess", lsg_source=other_lsg_source()),
    ]


def plan(datasets, rules, ablations):
    """``[(dataset, Variant)]`` in the order they run: per dataset (in the order given) its
    main rows, then its ablations, so a run cut short has complete datasets."""
    runs = []
    for dataset in datasets:
        runs += [(dataset, variant) for variant in main_variants(rules)]
        if ablations and dataset in ABLATION_DATASETS:
            runs += [(dataset, variant) for variant in ablation_variants()]
    return runs


@contextlib.contextmanager
def variant_models(variant, lsg_in_config, built=None):
    """While active, ``tess_keras.models.build_model`` builds ``variant``'s network:
    every spiking layer frozen for ``frozen`` (``TrainConfig`` has no such
    option), and TESS with the variant's ``lsg_source`` when ``TrainConfig``
    has no ``lsg_source`` field (``lsg_in_config`` False). The training loop
    is otherwise untouched. ``built`` (a dict), if given, receives the
    number of trainable parameters of the network built."""
    import numpy as np

    from tess_keras import models, rules

    original = models.build_model

    def build(name, input_shape, num_classes, rule="tess"):
        if not lsg_in_config and variant.lsg_source is not None and isinstance(rule, rules.TESS):
            config = {**rule.get_config(), "lsg_source": variant.lsg_source}
            rule = rules.TESS(**{k: v for k, v in config.items() if k != "name"})
        model = original(name, input_shape, num_classes, rule)
        if variant.frozen:
            for layer in model.spiking_layers:
                layer.trainable = False
        if built is not None:
            built["trainable_parameters"] = int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))
        return model

    models.build_model = build
    try:
        yield
    finally:
        models.build_model = original


def read_history(run_dir):
    """The rows of ``metrics.csv`` as dicts of floats."""
    import csv

    with open(pathlib.Path(run_dir) / "metrics.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def train_one(dataset, variant, seed, args, work):
    """Train one configuration; returns its result record."""
    import keras

    from tess_keras import recipes, training

    recipe = recipes.get_recipe(dataset)
    fields = {field.name for field in dataclasses.fields(training.TrainConfig)}
    out = pathlib.Path(work) / f"{dataset}-{variant.label.replace(' ', '_').replace('=', '')}-s{seed}"
    if out.exists():
        shutil.rmtree(out)
    options = {
        "dataset": dataset, "rule": variant.rule, "model": "mcu", "seed": seed, "out": str(out),
        "epochs": args.epochs or recipe.epochs, "batch_size": recipe.batch_size, "lr": recipe.lr,
        "time_steps": recipe.time_steps,
        "alpha_post": recipe.alpha_post if variant.alpha_post is None else variant.alpha_post,
        "limit_train": args.limit_train, "data_dir": args.data_dir or "",
        "lsg_source": variant.lsg_source or default_lsg_source(),
    }
    config = training.TrainConfig(**{k: v for k, v in options.items() if k in fields})
    keras.backend.clear_session()
    started = time.perf_counter()
    built = {}
    with variant_models(variant, "lsg_source" in fields, built):
        summary = training.train(config)
    wall = time.perf_counter() - started
    history = read_history(out)
    best = max(range(len(history)), key=lambda i: history[i]["val_accuracy"])
    record = {
        "dataset": dataset, "variant": variant.label, "rule": variant.rule, "seed": seed,
        "alpha_post": config.alpha_post, "lsg_source": variant.lsg_source or default_lsg_source(),
        "frozen": variant.frozen,
        "epochs": config.epochs, "limit_train": args.limit_train,
        "time_steps": summary.get("time_steps", config.time_steps),
        "trainable_parameters": built.get("trainable_parameters"),
        "test_accuracy": summary["test_accuracy"],
        "validation_accuracy": summary.get("validation_accuracy"),
        "selected_epoch": summary.get("selected_epoch"),
        "best_validation_epoch": int(history[best]["epoch"]),
        "best_validation_accuracy": history[best]["val_accuracy"],
        # The first epoch also traces and compiles the step functions: left out when there are more.
        "seconds_per_epoch": statistics.fmean(row["seconds"] for row in (history[1:] or history)),
        "first_epoch_seconds": history[0]["seconds"],
        "train_samples": sum(summary["class_counts"]["train"]) if "class_counts" in summary else None,
        "validation_protocol": "validation_accuracy" in summary,
        "wall_seconds": round(wall, 1),
        "history": history,
    }
    if not args.keep_runs:
        shutil.rmtree(out, ignore_errors=True)
    return record


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)  # no std of one seed


def aggregate(records):
    """Per (dataset, variant): means and stds over the seeds."""
    groups = {}
    for record in records:
        groups.setdefault((record["dataset"], record["variant"]), []).append(record)
    rows = []
    for (dataset, variant), group in groups.items():
        accuracy, accuracy_std = _mean_std([100 * r["test_accuracy"] for r in group])
        epoch, epoch_std = _mean_std([r["best_validation_epoch"] for r in group])
        seconds, seconds_std = _mean_std([r["seconds_per_epoch"] for r in group])
        rows.append({
            "dataset": dataset, "variant": variant, "seeds": sorted(r["seed"] for r in group),
            "test_accuracy_mean": accuracy, "test_accuracy_std": accuracy_std,
            "best_validation_epoch_mean": epoch, "best_validation_epoch_std": epoch_std,
            "seconds_per_epoch_mean": seconds, "seconds_per_epoch_std": seconds_std,
            "epochs": group[0]["epochs"], "time_steps": group[0]["time_steps"],
        })
    return rows


def goals(rows):
    """Each goal of issue 13 on each goal dataset: measured, met or not (None when not measured)."""
    table = {(row["dataset"], row["variant"]): row["test_accuracy_mean"] for row in rows}
    result = []
    for dataset in GOAL_DATASETS:
        tess, bptt, frozen = (table.get((dataset, name)) for name in ("tess", "bptt", "frozen"))
        result.append({
            "dataset": dataset, "goal": f"TESS within {BPTT_GAP} points of BPTT",
            "value": None if tess is None or bptt is None else tess - bptt,
            "met": None if tess is None or bptt is None else tess >= bptt - BPTT_GAP,
        })
        result.append({
            "dataset": dataset, "goal": f"TESS at least {FROZEN_MARGIN} points above frozen hidden layers",
            "value": None if tess is None or frozen is None else tess - frozen,
            "met": None if tess is None or frozen is None else tess >= frozen + FROZEN_MARGIN,
        })
        other = other_lsg_source()
        block, layer = tess, table.get((dataset, f"tess lsg={other}"))
        if other == "block":
            block, layer = layer, tess
        result.append({
            "dataset": dataset, "goal": f"lsg_source layer beats block by at least {LSG_MARGIN} point",
            "value": None if block is None or layer is None else layer - block,
            "met": None if block is None or layer is None else layer >= block + LSG_MARGIN,
        })
    return result


def _fmt(mean, std, digits=1):
    if mean is None:
        return "not run"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(rows, goal_rows, settings):
    lines = [
        "# Accuracy benchmark (mcu network)", "",
        f"Measured {settings['date']} on {settings['machine']}; settings: epochs {settings['epochs'] or 'recipe'}, "
        f"seeds requested {settings['seeds']} (the seeds column counts those measured), training samples "
        f"{(str(settings['limit_train']) + ' (a stratified subset)') if settings['limit_train'] else 'all of the training split'}"
        f" (validation and test splits in full), validation protocol in the "
        f"training loop: {settings['validation_protocol']}. Seconds per epoch leave out the first epoch (tracing) "
        f"and were measured on a CPU shared with other jobs.", "",
        "| dataset | configuration | T | epochs | seeds | test accuracy % (mean ± std) | best-validation epoch | s / epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if not settings["validation_protocol"]:
        lines[2:2] = ["**The training loop had no validation split when this ran: its 'validation' column was the test "
                      "split, so the best-validation epoch below is the epoch of the best test accuracy, and the test "
                      "accuracy is that of the last epoch.**", ""]
    for row in rows:
        lines.append(
            f"| {row['dataset']} | {row['variant']} | {row['time_steps']} | {row['epochs']} | {len(row['seeds'])} | "
            f"{_fmt(row['test_accuracy_mean'], row['test_accuracy_std'])} | "
            f"{_fmt(row['best_validation_epoch_mean'], row['best_validation_epoch_std'])} | "
            f"{_fmt(row['seconds_per_epoch_mean'], row['seconds_per_epoch_std'])} |")
    lines += ["", "## Goals", "", "| dataset | goal | measured (points) | met |", "|---|---|---|---|"]
    for goal in goal_rows:
        value = "not measured" if goal["value"] is None else f"{goal['value']:+.1f}"
        met = "not measured" if goal["met"] is None else ("yes" if goal["met"] else "no")
        lines.append(f"| {goal['dataset']} | {goal['goal']} | {value} | {met} |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    """Test accuracy (mean ± std) of every configuration, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    if not datasets:
        return
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4.5), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        chosen = [row for row in rows if row["dataset"] == dataset]
        axis.bar(range(len(chosen)), [row["test_accuracy_mean"] for row in chosen],
                 yerr=[row["test_accuracy_std"] or 0.0 for row in chosen], capsize=3, color="tab:blue")
        axis.set_xticks(range(len(chosen)), [row["variant"] for row in chosen], rotation=45, ha="right", fontsize=8)
        low = min(row["test_accuracy_mean"] for row in chosen)
        axis.set_ylim(max(0, low - 10), 100)
        axis.set_title(f"{dataset} (mcu)")
        axis.set_ylabel("test accuracy %")
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)


def write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(out, settings, records):
    unique = {}
    for record in records:  # one record per (dataset, configuration, seed): the first measured
        unique.setdefault((record["dataset"], record["variant"], record["seed"]), record)
    records = list(unique.values())
    rows = aggregate(records)
    goal_rows = goals(rows)
    settings = {**settings, "validation_protocol": all(r["validation_protocol"] for r in records) if records else None}
    payload = {"settings": settings, "summary": rows, "goals": goal_rows, "runs": records}
    write_atomic(out / "accuracy_bench.json", json.dumps(payload, indent=1) + "\n")
    write_atomic(out / "accuracy_bench.md", markdown(rows, goal_rows, settings))
    plot(rows, out / "accuracy_bench.png")
    return rows, goal_rows


def report_only(out):
    """Rewrite the Markdown, goals and plot of ``out/accuracy_bench.json`` from its runs."""
    path = out / "accuracy_bench.json"
    if not path.is_file():
        raise SystemExit(f"accuracy_bench: {path} does not exist; run the benchmark first (without --report).")
    payload = json.loads(path.read_text())
    rows, goal_rows = write_results(out, payload["settings"], payload["runs"])
    print(markdown(rows, goal_rows, {**payload["settings"],
                                     "validation_protocol": all(r["validation_protocol"] for r in payload["runs"])}))


def _names(text, allowed, what):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise SystemExit(f"accuracy_bench: unknown {what} {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(allowed)} (comma-separated).")
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of " + ", ".join(DATASETS))
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated subset of " + ", ".join(RULES))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per configuration (default 3)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs per run (default: the dataset's recipe)")
    parser.add_argument("--limit-train", type=int, default=0, help="stratified subset of the training data (0: all)")
    parser.add_argument("--no-ablations", action="store_true", help="skip the TESS alpha_post / lsg_source ablations")
    parser.add_argument("--data-dir", default="", help="datasets folder (default: $TESS_DATA_DIR or ~/.tess/data)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="results folder")
    parser.add_argument("--work", type=pathlib.Path, default=None, help="where run directories go (default: a temp folder)")
    parser.add_argument("--keep-runs", action="store_true", help="keep every run directory")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the JSON and skip them")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: rewrite the tables, goals and plot from the runs in the JSON")
    args = parser.parse_args(argv)
    if args.report:
        return report_only(args.out)
    datasets = _names(args.datasets, DATASETS, "dataset")
    rules = _names(args.rules, RULES, "rule")
    if args.seeds < 1 or args.epochs < 0 or args.limit_train < 0:
        raise SystemExit("accuracy_bench: --seeds must be at least 1, --epochs and --limit-train at least 0.")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or pathlib.Path(tempfile.mkdtemp(prefix="accuracy_bench-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared)",
        "datasets": datasets, "rules": rules, "seeds": args.seeds, "epochs": args.epochs,
        "limit_train": args.limit_train, "ablations": not args.no_ablations, "model": "mcu",
        "command": " ".join([pathlib.Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    records = []
    existing = args.out / "accuracy_bench.json"
    if args.resume and existing.is_file():
        records = json.loads(existing.read_text())["runs"]
    done = {(r["dataset"], r["variant"], r["seed"]) for r in records}
    from tess_keras import training

    failures = []
    for seed in range(args.seeds):
        for dataset, variant in plan(datasets, rules, not args.no_ablations):
            if (dataset, variant.label, seed) in done:
                continue
            try:
                record = train_one(dataset, variant, seed, args, work)
            except training.TrainingInterrupted:  # Ctrl-C / SIGTERM stops the bench (results so far are saved)
                print(f"interrupted during {dataset} {variant.label} seed {seed}; rerun with --resume", flush=True)
                raise SystemExit(130) from None
            except Exception as error:  # one failed configuration must not lose the others' results
                print(f"{dataset} {variant.label} seed {seed}: FAILED ({type(error).__name__}: {error})", flush=True)
                failures.append({"dataset": dataset, "variant": variant.label, "seed": seed,
                                 "error": f"{type(error).__name__}: {error}"})
                continue
            records.append(record)
            done.add((dataset, variant.label, seed))
            print(f"{dataset:10s} {variant.label:22s} seed {seed}: test {100 * record['test_accuracy']:.1f} %, "
                  f"best validation at epoch {record['best_validation_epoch']}, "
                  f"{record['seconds_per_epoch']:.1f} s/epoch", flush=True)
            write_results(args.out, {**settings, "failures": failures}, records)
    rows, goal_rows = write_results(args.out, {**settings, "failures": failures}, records)
    print(markdown(rows, goal_rows, {**settings, "validation_protocol": all(r["validation_protocol"] for r in records)}))
    if args.work is None and not args.keep_runs:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise SystemExit(f"accuracy_bench: {len(failures)} configuration(s) failed; see 'failures' in the JSON.")


if __name__ == "__main__":
    main()
