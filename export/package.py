"""The export directory as a CMake package: the static library ``tess::engine``.

``write_package`` adds to an export directory what a user's own firmware needs
to link the engine without this repository:

- ``runtime/``: a copy of every file of the fixed runtime (firmware/runtime);
- ``CMakeLists.txt``: the library target (the generated engine plus every
  ``runtime/*.cc`` / ``*.c``), usable by ``add_subdirectory`` and installable
  for ``find_package(tess_engine)``;
- ``cmake/tess_engineConfig.cmake``: the installed package's config file;
- ``cmake/arm-none-eabi.cmake``: the repository's toolchain file for the GNU
  Arm Embedded toolchain, a convenience for cross-compiling.
"""

import shutil
from pathlib import Path

import jinja2

from tess_keras.export import codegen
from tess_keras.export.boards import FIRMWARE_DIR

TEMPLATES = Path(__file__).parent / "templates"
TOOLCHAIN_FILE = "arm-none-eabi.cmake"
CONFIG_FILE = "tess_engineConfig.cmake"


def write_package(out_dir, source="a Keras model", board=None):
    """Write the CMake package files into an export directory holding the engine.

    Args:
        out_dir: the (temporary) export directory; codegen.write_engine has run.
        source: what the engine was generated from (named in CMakeLists.txt).
        board: the export's board preset (its CPU flags go into the
            cross-compiling example), or None for a host export.

    Returns:
        The paths written (files and the runtime folder).
    """
    out_dir = Path(out_dir)
    shutil.copytree(codegen.runtime_dir(), out_dir / "runtime")
    cmake_dir = out_dir / "cmake"
    cmake_dir.mkdir()
    shutil.copyfile(TEMPLATES / CONFIG_FILE, cmake_dir / CONFIG_FILE)
    shutil.copyfile(FIRMWARE_DIR / "cmake" / TOOLCHAIN_FILE, cmake_dir / TOOLCHAIN_FILE)
    # The library's own sources are the generated files; the runtime's are those of
    # runtime/, which CMakeLists.txt globs (the export has no other copy of them).
    generated = codegen.ENGINE_FILES
    cpu_flags = " ".join(["-mthumb", *board.spec.get("cpu_flags", [])]) if board is not None else None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    text = env.get_template("CMakeLists.txt.j2").render(
        source=source,
        engine_sources=[name for name in generated if name.endswith((".cc", ".c"))],
        engine_headers=[name for name in generated if name.endswith(".h")],
        board=board.name if board is not None else None,
        cpu_flags=cpu_flags,
    )
    (out_dir / "CMakeLists.txt").write_text(text)
    return [out_dir / "CMakeLists.txt", out_dir / "runtime", cmake_dir / CONFIG_FILE, cmake_dir / TOOLCHAIN_FILE]
