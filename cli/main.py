"""``tess`` entry point: the app plus one module per command.

Only typer and rich are imported at start-up; each command imports
TensorFlow when it runs, so ``tess --help`` answers at once.
"""

import importlib.util
import sys

from tess_keras.cli import build  # noqa: F401  (registers its command)
from tess_keras.cli import datasets  # noqa: F401  (registers its command)
from tess_keras.cli import flash  # noqa: F401  (registers its command)
from tess_keras.cli import eval  # noqa: F401  (registers its command)
from tess_keras.cli import export  # noqa: F401  (registers its command)
from tess_keras.cli import info  # noqa: F401  (registers its command)
from tess_keras.cli import nir  # noqa: F401  (registers its command)
from tess_keras.cli import profile  # noqa: F401  (registers its command)
from tess_keras.cli import simulate  # noqa: F401  (registers its command)
from tess_keras.cli import train  # noqa: F401  (registers its command)
from tess_keras.cli.app import app, console


def run():
    try:
        app(prog_name="tess")
    except ImportError:
        if importlib.util.find_spec("tensorflow") is not None:
            raise
        # A command's lazy import found no TensorFlow; the app has exited, so report here.
        console.print(
            "[bold red]error:[/] TensorFlow is not installed. Like Keras 3, tess-keras leaves the choice of "
            "build to you: pip install -e '.\\[cpu]' for the CPU-only build, or pip install -e '.\\[gpu]' on a "
            "Linux machine with NVIDIA GPUs (one of the two, not both)."
        )
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(run())
