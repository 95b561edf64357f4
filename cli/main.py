"""``tess`` entry point: the app plus one module per command.

Only typer and rich are imported at start-up; each command imports
TensorFlow when it runs, so ``tess --help`` answers at once.
"""

import sys

from tess_keras.cli import build  # noqa: F401  (registers its command)
from tess_keras.cli import datasets  # noqa: F401  (registers its command)
from tess_keras.cli import flash  # noqa: F401  (registers its command)
from tess_keras.cli import eval  # noqa: F401  (registers its command)
from tess_keras.cli import export  # noqa: F401  (registers its command)
from tess_keras.cli import info  # noqa: F401  (registers its command)
from tess_keras.cli import profile  # noqa: F401  (registers its command)
from tess_keras.cli import simulate  # noqa: F401  (registers its command)
from tess_keras.cli import train  # noqa: F401  (registers its command)
from tess_keras.cli.app import app


def run():
    app(prog_name="tess")


if __name__ == "__main__":
    sys.exit(run())
