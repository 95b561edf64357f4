"""The typer application and the one way commands report user errors."""

import typer
from rich.console import Console

app = typer.Typer(
    name="tess",
    help="Train spiking neural networks with TESS and deploy them to Cortex-M with on-device learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.callback()
def main(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        envvar="TESS_VERBOSE",
        help="Also show TensorFlow's own log messages and the TFLite converter's output.",
    ),
):
    """Train spiking neural networks with TESS and deploy them to Cortex-M."""
    from tess_keras import logs

    logs.configure(verbose)


def fail(message):
    """Print one clear paragraph and exit non-zero (no traceback)."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)
