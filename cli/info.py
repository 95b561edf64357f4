"""``tess info``: versions, accelerators and the embedded toolchain."""

import importlib.util
import platform
import shutil
import subprocess
import sys
from importlib import metadata

from tess_keras.cli.app import app

TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")


def package_version(name):
    """Installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def tool_version(name):
    """``(path, first line of --version)`` of an executable, or ``(None, None)``."""
    path = shutil.which(name)
    if path is None:
        return None, None
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        first = (result.stdout or result.stderr).strip().splitlines()
        return path, first[0] if first else ""
    except (OSError, subprocess.TimeoutExpired):
        return path, "(did not answer --version)"


@app.command()
def info():
    """Versions of Python, TensorFlow, Keras, tonic, memray; GPUs seen; arm-none-eabi-gcc and QEMU."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    import tess_keras

    table = Table(title="tess-keras environment", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("tess-keras", tess_keras.__version__)
    table.add_row("Python", f"{platform.python_version()} ({sys.executable})")
    for label, dist in (("TensorFlow", None), ("Keras", "keras"), ("tonic", "tonic"), ("tflite-micro", "tflite-micro"),
                        ("memray", "memray")):
        if dist is None:
            version = package_version("tensorflow") or package_version("tensorflow-cpu")
        else:
            version = package_version(dist)
        table.add_row(label, version or "[red]not installed[/]")

    if importlib.util.find_spec("tensorflow") is None:
        table.add_row("GPUs", "unknown until TensorFlow is installed: pip install -e '.\\[cpu]' or '.\\[gpu]'")
    else:
        from tess_keras.distribute import gpu_status

        gpus, gpu_problem = gpu_status()
        if gpus:
            table.add_row("GPUs", ", ".join(gpus))
        elif gpu_problem:
            table.add_row("GPUs", f"[yellow]none usable:[/] {escape(gpu_problem)}")
        else:
            table.add_row("GPUs", "none (training runs on the CPU)")
    for tool in TOOLS:
        path, version = tool_version(tool)
        table.add_row(tool, f"{version} ({path})" if path else "[red]not installed[/] (needed by `tess export` firmware builds)")
    Console().print(table)
