"""The export directory as a CMake package a user's own firmware links.

A tiny network is exported, the export directory copied away from the
repository, and a small application written outside the repository (its own
main.cc and its own input, through tess_engine.h only) links ``tess::engine``,
by ``add_subdirectory`` and by ``find_package`` after ``cmake --install``. It is
built for the host, where its classes and logits must equal the golden
model's, and for a Cortex-M4 with arm-none-eabi: the library's objects must be
Thumb-2 code for that CPU, and the application, linked with the repository's
board support for mps2-an386, must print the same lines in QEMU.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tess_keras.export import exporter, outdir
from tess_keras.export.golden import GoldenEngine, run_samples
from tess_keras.export.spec import build_spec

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
M4_FLAGS = "-mthumb -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard"
SAMPLES = 6

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("g++") is None,
                                reason="needs cmake and g++")
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs arm-none-eabi-g++")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")

MAIN_CC = """\
// A user's application: its own input through the engine's public API, one
// line per sample with the predicted class and the summed logits.
#include <stdint.h>

#include "inputs.h"
#include "platform.h"
#include "tess_engine.h"

static char *put_text(char *out, const char *text) {
    while (*text) *out++ = *text++;
    return out;
}

static char *put_int(char *out, int32_t value) {
    char digits[12];
    int count = 0;
    uint32_t magnitude = value < 0 ? 0u - (uint32_t)value : (uint32_t)value;
    if (value < 0) *out++ = '-';
    do {
        digits[count++] = (char)('0' + magnitude % 10u);
        magnitude /= 10u;
    } while (magnitude);
    while (count) *out++ = digits[--count];
    return out;
}

int main(void) {
    tess_platform_init();
    static char line[32 + 12 * TESS_NUM_CLASSES];
    for (int sample = 0; sample < APP_SAMPLES; ++sample) {
        tess_reset();
        for (int t = 0; t < TESS_TIME_STEPS; ++t) tess_step(app_inputs[sample][t], -1);
        char *out = put_int(put_text(line, "class "), tess_predict());
        out = put_text(out, " logits");
        const int32_t *logits = tess_logits();
        for (int k = 0; k < TESS_NUM_CLASSES; ++k) out = put_int(put_text(out, " "), logits[k]);
        put_text(out, "\\n")[0] = '\\0';
        tess_platform_write(line);
    }
    return 0;
}
"""

APP_CMAKE = """\
cmake_minimum_required(VERSION 3.16)
project(my_app C CXX)
set(ENGINE_DIR "" CACHE PATH "a tess export directory (add_subdirectory); empty: find_package(tess_engine)")
set(BSP "" CACHE PATH "board support: the platform layer of tess-keras' firmware/")
set(BOARD host CACHE STRING "host or mps2-an386")

if(ENGINE_DIR)
    add_subdirectory("${ENGINE_DIR}" tess_engine)
else()
    find_package(tess_engine REQUIRED)
endif()

if(BOARD STREQUAL "host")
    add_executable(my_app main.cc "${BSP}/host/platform_host.cc")
else()
    add_executable(my_app main.cc "${BSP}/boards/common/startup.cc" "${BSP}/boards/qemu/platform_qemu.cc"
                   "${BSP}/boards/common/semihosting.cc")
    set_target_properties(my_app PROPERTIES SUFFIX ".elf")
    target_compile_definitions(my_app PRIVATE TESS_BOARD_NAME="${BOARD}" TESS_SYSCLK_HZ=25000000u)
    target_compile_options(my_app PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fno-exceptions -fno-rtti>)
    target_link_options(my_app PRIVATE -nostartfiles --specs=nano.specs "-L${BSP}/boards/common"
                        "-T${BSP}/boards/${BOARD}/memory.ld" -Wl,--gc-sections)
endif()
target_compile_features(my_app PRIVATE cxx_std_17)
target_compile_options(my_app PRIVATE -Wall -Wextra -Werror)
target_include_directories(my_app PRIVATE "${BSP}/app" "${BSP}/boards/common")
target_link_libraries(my_app PRIVATE tess::engine)
"""


def untrained_run(path):
    from tess_keras.models import mcu_net

    path.mkdir(parents=True)
    mcu_net((8, 8, 1), 10).save(path / "model.keras")
    (path / "summary.json").write_text(json.dumps({"dataset": "digits", "time_steps": 4, "seed": 0}))
    return path


def c_inputs(x):
    rows = ",\n".join("{" + ", ".join("{" + ", ".join(str(int(v)) for v in step.ravel()) + "}" for step in sample) + "}"
                      for sample in x)
    return (f"#include <stdint.h>\n#include \"tess_engine.h\"\n#define APP_SAMPLES {len(x)}\n"
            f"static const int8_t app_inputs[APP_SAMPLES][TESS_TIME_STEPS][TESS_INPUT_SIZE] = {{\n{rows}}};\n")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """An export copied away from where it was written, an application, and the lines it must print."""
    root = tmp_path_factory.mktemp("package")
    run = untrained_run(root / "run")
    report = exporter.export(run, root / "export", target="cortex-m4", demo_learn=8, demo_test=8, demo_epochs=1,
                             evaluate=8, representative=8, verify_host=False)
    engine = root / "elsewhere" / "engine"  # the package must not need the repository, nor where it was written
    shutil.copytree(root / "export", engine)
    shutil.rmtree(root / "export")

    rng = np.random.default_rng(7)
    x = rng.integers(0, 128, size=(SAMPLES, report["time_steps"], 8, 8, 1)).astype(np.int8)
    app = root / "app"
    app.mkdir()
    (app / "main.cc").write_text(MAIN_CC)
    (app / "CMakeLists.txt").write_text(APP_CMAKE)
    (app / "inputs.h").write_text(c_inputs(x))

    model, _ = exporter.load_run(run)
    spec = build_spec(model, report["input_scale"], report["time_steps"], learn=report["learn"],
                      learning_rate=report["learning_rate"])
    golden = GoldenEngine(spec, batch=SAMPLES)
    classes = run_samples(golden, x, frames=True)
    expected = [f"class {c} logits " + " ".join(str(int(v)) for v in sums) for c, sums in zip(classes, golden.logit_sum)]
    assert len(set(expected)) > 1  # the samples tell the engines apart
    return engine, app, expected


def cmake(*args, cwd=None):
    result = subprocess.run(["cmake", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def build(source, build_dir, *options, cross=None):
    """Configure and build; ``cross``: an export directory whose toolchain file (cmake/) to use for the M4."""
    if cross:
        options = (f"-DCMAKE_TOOLCHAIN_FILE={cross / 'cmake' / 'arm-none-eabi.cmake'}", f"-DCMAKE_C_FLAGS={M4_FLAGS}",
                   f"-DCMAKE_CXX_FLAGS={M4_FLAGS}", *options)
    cmake("-S", source, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release", *options)
    cmake("--build", build_dir, "-j", "2")
    return build_dir


def run_app(executable, qemu=False):
    command = [str(executable)]
    if qemu:
        command = ["qemu-system-arm", "-machine", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
                   "-semihosting-config", "enable=on,target=native", "-kernel", str(executable)]
    # QEMU's semihosting console is its stderr.
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout
    return result.stdout.splitlines()


def test_export_directory_is_a_self_contained_package(package):
    engine, _, _ = package
    repository = str(FIRMWARE.parent)
    for path in [engine / "CMakeLists.txt", *(engine / "cmake").iterdir()]:
        assert repository not in path.read_text()  # nothing points back into the checkout
    runtime = sorted(p.name for p in (FIRMWARE / "runtime").iterdir() if p.is_file())
    assert sorted(p.name for p in (engine / "runtime").iterdir()) == runtime
    assert not [name for name in runtime if (engine / name).exists()]  # runtime/ is the only copy
    manifest = outdir.read_manifest(engine)  # the package's files are the export's own: a re-export replaces them
    assert sorted(manifest["files"]["runtime"]) == runtime and "CMakeLists.txt" in manifest["files"]
    assert sorted(manifest["files"]["cmake"]) == ["arm-none-eabi.cmake", "tess_engineConfig.cmake"]
    assert outdir.check_replaceable(engine) == "previous"
    assert "-mcpu=cortex-m4" in (engine / "CMakeLists.txt").read_text()  # the board's flags, documented


def test_host_application_links_the_engine_by_add_subdirectory(package, tmp_path):
    engine, app, expected = package
    built = build(app, tmp_path / "build", f"-DENGINE_DIR={engine}", f"-DBSP={FIRMWARE}", "-DTESS_ENGINE_WERROR=ON")
    assert run_app(built / "my_app") == expected


def test_host_application_finds_the_installed_engine(package, tmp_path):
    engine, app, expected = package
    build(engine, tmp_path / "engine-build", "-DTESS_ENGINE_WERROR=ON")
    cmake("--install", tmp_path / "engine-build", "--prefix", tmp_path / "prefix")
    assert (tmp_path / "prefix" / "include" / "tess_engine" / "tess_engine.h").is_file()
    built = build(app, tmp_path / "app-build", f"-DCMAKE_PREFIX_PATH={tmp_path / 'prefix'}", f"-DBSP={FIRMWARE}")
    assert run_app(built / "my_app") == expected


def test_builds_of_an_export_compile_the_runtime_it_ships(package, tmp_path):
    """The host check (hostbuild) and `tess build` compile the export's runtime/, not the
    checkout's firmware/runtime: an error planted in the export's copy stops both."""
    from tess_keras.export import build as firmware_build
    from tess_keras.export import hostbuild
    from tess_keras.export.spec import ExportError

    engine, _, _ = package
    copy = shutil.copytree(engine, tmp_path / "engine")
    planted = copy / "runtime" / "tess_pool.cc"
    planted.write_text("#error planted in the export's runtime\n" + planted.read_text())
    with pytest.raises(ExportError, match="planted in the export's runtime"):
        hostbuild.compile_engine(copy, [], tmp_path / "never", hostbuild.host_flags(sanitize=False))
    with pytest.raises(firmware_build.FirmwareError, match="planted in the export's runtime"):
        firmware_build.build(copy, board="host", build_root=tmp_path / "build")
    assert hostbuild.engine_runtime(copy) == copy / "runtime"


def test_every_runtime_source_is_compiled_into_the_library(package, tmp_path):
    engine, _, _ = package
    copy = shutil.copytree(engine, tmp_path / "engine")
    (copy / "runtime" / "tess_extra_kernel.c").write_text("int tess_extra_kernel(int x) { return x + 1; }\n")
    (copy / "runtime" / "tess_extra_rows.cc").write_text("int tess_extra_rows(int x) { return x * 2; }\n")
    built = build(copy, tmp_path / "build", "-DTESS_ENGINE_WERROR=ON")
    members = subprocess.run(["ar", "t", str(built / "libtess_engine.a")], capture_output=True, text=True).stdout
    expected = ["tess_engine.cc"] + [p.name for p in (copy / "runtime").iterdir() if p.suffix in (".cc", ".c")]
    assert sorted(Path(name).stem for name in members.split()) == sorted(expected)


@needs_arm
def test_cortex_m4_library_is_thumb2_code_for_the_cpu(package, tmp_path):
    engine, _, _ = package
    built = build(engine, tmp_path / "build", "-DTESS_ENGINE_WERROR=ON", cross=engine)
    (archive,) = built.glob("libtess_engine.a")
    attributes = subprocess.run(["arm-none-eabi-readelf", "-A", str(archive)], capture_output=True, text=True).stdout
    objects = re.findall(r"^File: .*\((.*)\)$", attributes, re.M)
    assert any(name.startswith("tess_engine.") for name in objects)
    runtime_sources = [p for p in (engine / "runtime").iterdir() if p.suffix in (".cc", ".c")]
    assert len(objects) == 1 + len(runtime_sources)  # the engine and every runtime source
    for block in attributes.split("File: ")[1:]:
        assert "Tag_CPU_arch: v7E-M" in block and "Tag_THUMB_ISA_use: Thumb-2" in block
        assert "Tag_ABI_VFP_args: VFP registers" in block  # -mfloat-abi=hard, as the firmware


@needs_arm
@needs_qemu
def test_cortex_m4_application_finds_the_installed_engine_and_runs_in_qemu(package, tmp_path):
    engine, app, expected = package
    build(engine, tmp_path / "engine-build", cross=engine)
    cmake("--install", tmp_path / "engine-build", "--prefix", tmp_path / "prefix")
    built = build(app, tmp_path / "app-build", f"-DCMAKE_PREFIX_PATH={tmp_path / 'prefix'}", f"-DBSP={FIRMWARE}",
                  "-DBOARD=mps2-an386", cross=engine)
    assert run_app(built / "my_app.elf", qemu=True) == expected


@needs_arm
@needs_qemu
def test_cortex_m4_application_links_the_engine_by_add_subdirectory(package, tmp_path):
    engine, app, expected = package
    built = build(app, tmp_path / "build", f"-DENGINE_DIR={engine}", f"-DBSP={FIRMWARE}", "-DBOARD=mps2-an386",
                  cross=engine)
    assert run_app(built / "my_app.elf", qemu=True) == expected
