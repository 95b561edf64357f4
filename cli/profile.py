"""``tess profile``: layer sizes and the training cost of each rule."""

import json

import typer

from tess_keras.cli.app import app, fail


def _shapes(dataset, time_steps, num_classes):
    """(input_shape, num_classes, T, alpha_post) of a dataset without its files:
    shapes from the data catalog, training defaults from the recipe."""
    from tess_keras.data import catalog
    from tess_keras.recipes import get_recipe

    if dataset not in catalog.INFO:
        fail(f"unknown dataset {dataset!r}; choose one of: {', '.join(sorted(catalog.INFO))}.")
    info, recipe = catalog.INFO[dataset], get_recipe(dataset)
    steps = time_steps or recipe.time_steps or info.time_steps
    return tuple(info.input_shape), num_classes or info.num_classes, steps, recipe.alpha_post


def _millions(value):
    from tess_keras.profile import paper_millions

    return paper_millions(value)


@app.command()
def profile(
    model: str = typer.Option(None, help="Network (default: the dataset's recipe): vgg9 or mcu."),
    dataset: str = typer.Option("cifar10", help="Dataset whose recipe gives input shape, classes and T."),
    time_steps: int = typer.Option(None, help="Time steps T (default: the recipe's)."),
    num_classes: int = typer.Option(None, help="Override the number of classes (e.g. 10 for the paper's DVS Gesture MACs)."),
    alpha_post: float = typer.Option(None, help="TESS alpha_post (default: the recipe's; 0 halves TESS's memory)."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable JSON object instead of tables."),
    measure: bool = typer.Option(False, help="Also measure the peak memory of one compiled train step per rule."),
    batch_size: int = typer.Option(1, help="Batch size of the measured train step (--measure)."),
):
    """Per-layer sizes and the paper's cost model (credit-assignment MACs, memory) per rule.

    Neurons, parameters and forward MACs of every layer, then BPTT, S-TLLR and TESS per sample, with the
    paper's figures beside them for its four recipes. Needs no dataset files: shapes come from the recipe.
    """
    from tess_keras.recipes import get_recipe

    for label, value in (("--time-steps", time_steps), ("--num-classes", num_classes), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            fail(f"{label} must be a positive integer, got {value}.")
    if alpha_post is not None and alpha_post not in (-1.0, 0.0, 1.0):
        fail(f"--alpha-post must be -1, 0 or 1, got {alpha_post:g}.")
    input_shape, classes, steps, recipe_alpha = _shapes(dataset, time_steps, num_classes)
    model = model or get_recipe(dataset).model
    alpha_post = recipe_alpha if alpha_post is None else alpha_post

    from tess_keras import models
    from tess_keras import profile as cost

    if model not in models.MODELS:
        fail(f"unknown model {model!r}; choose one of: {', '.join(models.MODELS)}.")
    report = cost.profile(model, input_shape, classes, steps, alpha_post)
    report["dataset"] = dataset
    report["notes"] = list(cost.DIFFERENCES)
    if dataset in cost.PAPER and model == "vgg9":
        report["paper"] = {
            rule: {"credit_assignment_macs": macs, "training_memory_mb": mb} for rule, (macs, mb) in cost.PAPER[dataset].items()
        }
    if measure:
        report["measured"] = _measure(model, input_shape, classes, steps, alpha_post, batch_size)

    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_report(report)


def _measure(model, input_shape, classes, steps, alpha_post, batch_size):
    from tess_keras import memory, rules

    rule_objects = {"bptt": rules.BPTT(), "stllr": rules.STLLR(alpha_post=1.0), "tess": rules.TESS(alpha_post=alpha_post)}
    jobs = [
        dict(rule=rule, time_steps=steps, batch_size=batch_size, input_shape=input_shape, num_classes=classes, model=model)
        for rule in rule_objects.values()
    ]
    try:
        results = memory.profile_train_steps(jobs)
    except memory.MeasurementError as error:
        fail(f"measuring the train steps failed: {error}")
    return {
        name: {"peak_bytes": result.peak_bytes, "device": result.device, "method": result.method, "batch_size": batch_size}
        for name, result in zip(rule_objects, results)
    }


def _print_report(report):
    from tess_keras import profile as cost
    from rich import box
    from rich.console import Console
    from rich.table import Table

    out = Console()  # stdout: the report is the command's output
    title = (
        f"{report['model']} on {report['dataset']}: input {'×'.join(map(str, report['input_shape']))}, "
        f"{report['num_classes']} classes, T={report['time_steps']}"
    )
    layers = Table(title=title)
    for column in ("layer", "output", "neurons", "params", "MACs / step", "LSG a"):
        layers.add_column(column, justify="left" if column in ("layer", "output") else "right")
    for layer in report["layers"]:
        layers.add_row(
            layer["name"],
            "×".join(map(str, layer["output_shape"])),
            f"{layer['neurons']:,}" if layer["neurons"] else "",
            f"{layer['params']:,}" if layer["params"] else "",
            f"{layer['forward_macs']:,}" if layer["forward_macs"] else "",
            f"{layer['lsg_size']:,}" if layer["lsg_size"] else "",
        )
    steps = report["time_steps"]
    layers.add_section()
    layers.add_row("total", "", f"{report['neurons']:,}", f"{report['params']:,}", f"{report['forward_macs'] // steps:,}", "")
    out.print(layers)
    out.print(f"forward MACs per sample over T={steps}: {report['forward_macs']:,} ({_millions(report['forward_macs'])})")
    out.print("MACs in millions truncated to two decimals, as the paper prints them (exact integers: --json).")

    rules = {rule: report[rule] for rule in cost.RULE_NAMES}
    paper = report.get("paper")
    costs = Table(
        title=f"Credit assignment MACs and training memory (fp32) per sample, TESS α_post={report['alpha_post']:g}",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
    )
    for column in ("rule", "credit MACs", "vs BPTT", "memory MB", "vs BPTT"):
        costs.add_column(column, justify="left" if column == "rule" else "right")
    if paper:
        costs.add_column("paper MACs", justify="right")
        costs.add_column("paper MB", justify="right")
    names = {"bptt": "BPTT", "stllr": "S-TLLR", "tess": "TESS"}
    bptt = rules["bptt"]
    for rule, figures in rules.items():
        macs, memory = figures["credit_assignment_macs"], figures["training_memory"]
        row = [
            names[rule],
            _millions(macs),
            f"{bptt['credit_assignment_macs'] / macs:,.1f}×" if macs else "-",
            f"{memory * 4 / 1e6:.2f}",
            f"{bptt['training_memory'] / memory:.1f}×",
        ]
        if paper:
            row += [_millions(paper[rule]["credit_assignment_macs"]), f"{paper[rule]['training_memory_mb']:.2f}"]
        costs.add_row(*row)
    out.print(costs)
    if "measured" in report:
        measured = Table(title="Measured peak memory of one compiled train step")
        for column in ("rule", "batch", "peak MiB", "device", "method"):
            measured.add_column(column)
        for rule, figures in report["measured"].items():
            measured.add_row(
                names[rule], str(figures["batch_size"]), f"{figures['peak_bytes'] / 2**20:.1f}", figures["device"], figures["method"]
            )
        out.print(measured)
    if paper:
        out.print("[bold]Where these figures differ from the paper:[/]")
        for note in report["notes"]:
            out.print(f"• {note}")
