"""The runtime's kernels, reference and fast path (firmware/runtime/tess_fast.h).

- firmware/tests/kernel_check.cc runs every fast kernel against its reference
  on random shapes, spike rates and extreme values, bit for bit: on the host
  (the DSP operations emulated in C, under ASan/UBSan) and, marked slow, on
  the four QEMU boards with the real instructions;
- an off-by-one planted in any fast kernel makes that check fail;
- whole engines of several shapes (channel counts that are not multiples of
  the SIMD blocks, fan-in past the int16 lanes' flush, int8 and spike inputs)
  match the golden model bit for bit on the fast path and with
  -DTESS_KERNELS_REFERENCE.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tess_keras.export import codegen, hostbuild
from tess_keras.export.spec import build_spec

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (apt-get install g++)")

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
CHECK = FIRMWARE / "tests" / "kernel_check.cc"
KERNELS = ("currents", "readout", "fire", "traces", "rescale", "eligibility", "dw", "update")
HELIUM_KERNELS = ("signal",)  # fast on the M55 only
HELIUM_BOARD = "mps3-an547"


def build_check(runtime, binary, sanitize):
    """Compile the kernel check against the runtime in ``runtime`` with the DSP operations emulated."""
    flags = hostbuild.host_flags(sanitize) if sanitize else (*hostbuild.HOST_FLAGS, "-O1")
    command = [hostbuild.compiler(), *flags, "-DTESS_KERNELS_EMULATE_DSP", "-I", str(runtime),
               "-I", str(FIRMWARE / "app"), str(CHECK), str(FIRMWARE / "host" / "platform_host.cc"),
               *sorted(str(p) for p in Path(runtime).glob("*.cc")), "-o", str(binary)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return binary


def run_check(binary):
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def test_every_fast_kernel_matches_its_reference_on_the_host(tmp_path):
    code, report = run_check(build_check(codegen.runtime_dir(), tmp_path / "kernel_check", sanitize=True))
    assert report["path"] == "dsp-emulated"
    for kernel in KERNELS:
        cases, fast, mismatches = report[kernel]
        assert cases > 0 and fast > 0 and mismatches == 0, (kernel, report[kernel])
    assert code == 0 and report["mismatches"] == 0


# One planted error per fast kernel: (file, original text, off-by-one text, the kernel that must report it).
MUTATIONS = [
    ("tess_forward_fast.cc", "out[4 * q + 3] += (int16_t)(a[2 * q + 1] >> 16);",
     "out[4 * q + 3] += (int16_t)(a[2 * q + 1] >> 16) + 1;", "currents"),
    ("tess_forward_fast.cc", "const uint32_t even = tess_sxtb16(word), odd = tess_sxtb16_ror8(word);",
     "const uint32_t even = tess_sxtb16(word) + 1u, odd = tess_sxtb16_ror8(word);", "currents"),
    ("tess_forward_fast.cc", "for (int32_t c = 0; c < before; ++c) *v++ = 0;", "for (int32_t c = 0; c < before; ++c) *v++ = 1;",
     "currents"),
    ("tess_forward_fast.cc", "for (int32_t c = 0; c < run; ++c) *v++ = in[c];", "for (int32_t c = 0; c < run; ++c) *v++ = in[c] + 1;",
     "currents"),
    ("tess_forward_fast.cc", "b = tess_smlad(f[j], tess_load32(w + 4 * (kPairs + j)), b);",
     "b = tess_smlad(f[j], tess_load32(w + 4 * (kPairs + j)), b + 1);", "currents"),
    ("tess_fire_fast.cc", "* gamma + (1 << 14)) >> 15;", "* gamma + (1 << 14) + 1) >> 15;", "fire"),
    ("tess_fire_fast.cc", "tess_smmulr(scaled, mult)", "tess_smmulr(scaled, mult) + 1", "fire"),
    ("tess_fire_fast.cc", "((q[i] * lambda_pre + (1 << 14)) >> 15)", "((q[i] * lambda_pre + (1 << 14)) >> 14)", "traces"),
    ("tess_fire_fast.cc", "(1 << TESS_U_FRAC) - distance;", "(1 << TESS_U_FRAC) - distance + 1;", "traces"),
    ("tess_fire_fast.cc", "+ round) >> down;", "+ round + 1) >> down;", "fire"),
    ("tess_fast.h", "(hi + (1 << (shift - 33)))", "(hi + (1 << (shift - 33)) + 1)", "rescale"),
    ("tess_fast.h", "rounded = lo + (1u << (shift - 1))", "rounded = lo + (1u << (shift - 1)) + 1u", "rescale"),
    ("tess_learn.cc", "(int64_t)g * v + (1 << 14);", "(int64_t)g * v + (1 << 13);", "eligibility"),
    ("tess_learn.cc", "(hi < 0) != (alpha < 0) ? INT16_MIN", "(hi < 0) == (alpha < 0) ? INT16_MIN", "eligibility"),
    ("tess_learn.cc", "(rest * scale + (1 << (TESS_U_FRAC - 1)))", "(rest * scale + (1 << (TESS_U_FRAC - 2)))",
     "eligibility"),
    ("tess_dw_fast.cc", "a3 = smlald(e[3], qx, a3);", "a3 = smlald(e[3], qx, a3) + 1;", "dw"),
    ("tess_dw_fast.cc", "const int64_t round = (int64_t)1 << (shift - 1);", "const int64_t round = (int64_t)1 << shift;",
     "dw"),
    ("tess_dw_fast.cc", "| (hi << (32 - shift))));", "| (hi << (32 - shift))) + 1);", "dw"),
    ("tess_update_fast.cc", "((int32_t)random - delta) >> 16", "((int32_t)random - delta + 1) >> 16", "update"),
    ("tess_update_fast.cc", "w[i + 1] = clamp_weight(w[i + 1] + (((int32_t)(random >> 16) - d1) >> 16));",
     "w[i + 1] = clamp_weight(w[i + 1] + (((int32_t)(random >> 15) - d1) >> 16));", "update"),
    ("tess_update_fast.cc", "d1 = (g1 * m1 + r1) >> s1;", "d1 = (g1 * m1 + r1) >> (s1 - 1);", "update"),
    ("tess_update_fast.cc", "if (d1 != 0) w[1] = clamp_weight(w[1] + (((int32_t)(random >> 16) - d1) >> 16));",
     "if (d1 != 0) w[1] = clamp_weight(w[1] + (((int32_t)(random >> 15) - d1) >> 16));", "update"),
    ("tess_update_fast.cc", "const uint32_t position = seed + (counter + (uint32_t)(c / 2)) * TESS_RANDOM_STEP;",
     "const uint32_t position = seed + (counter + (uint32_t)(c / 2) + 1u) * TESS_RANDOM_STEP;", "update"),
]


@pytest.mark.parametrize("name, original, planted, kernel", MUTATIONS,
                         ids=[f"{m[3]}-{i}" for i, m in enumerate(MUTATIONS)])
def test_an_off_by_one_in_a_fast_kernel_is_caught(name, original, planted, kernel, tmp_path):
    runtime = tmp_path / "runtime"
    shutil.copytree(codegen.runtime_dir(), runtime)
    text = (runtime / name).read_text()
    assert text.count(original) == 1, f"{name} no longer holds the line this test plants an error in"
    (runtime / name).write_text(text.replace(original, planted))
    code, report = run_check(build_check(runtime, tmp_path / "kernel_check", sanitize=False))
    assert code != 0 and report[kernel][2] > 0, report


def model(kind):
    import keras

    from tess_keras.layers import Readout, SpikingConv2D, SpikingDense
    from tess_keras.models import SpikingSequential
    from tess_keras.rules import TESS

    keras.utils.set_random_seed(11)
    if kind == "odd-channels":  # 20 = 16 + 4 channels, a 5x5 valid kernel, then 36 = 2 x 16 + 4 with fan-in 180
        layers, shape = [
            SpikingConv2D(20, 5, padding="valid", lsg_pool=1, name="c1"),
            SpikingConv2D(36, 3, padding="same", lsg_pool=2, name="c2"),
            keras.layers.Flatten(name="flat"),
            Readout(7, name="out"),
        ], (9, 9, 3)
    else:  # dense: fan-in 243 (int8) and 300 (past the 255 rows an int16 lane may hold), 30 = 16 + 12 + 2 channels
        layers, shape = [
            SpikingDense(300, name="d1"),
            SpikingDense(30, name="d2"),
            Readout(3, name="out"),
        ], (243,)
    net = SpikingSequential(layers, rule=TESS(alpha_post=1.0))
    net.build((None, None, *shape))
    return net, shape


@pytest.mark.parametrize("kind", ["odd-channels", "dense"])
@pytest.mark.parametrize("path", ["fast", "reference"])
def test_engine_on_either_path_matches_the_golden_model(kind, path, tmp_path):
    net, shape = model(kind)
    spec = build_spec(net, 1 / 127, time_steps=3, learning_rate=0.05)
    codegen.write_engine(spec, tmp_path)
    harness = codegen.write_harness(spec, tmp_path)
    define = "-DTESS_KERNELS_EMULATE_DSP" if path == "fast" else "-DTESS_KERNELS_REFERENCE"
    binary = hostbuild.compile_engine(tmp_path, [harness], tmp_path / "harness", (define, *hostbuild.host_flags()))
    rng = np.random.default_rng(3)
    x = rng.integers(0, 128, size=(6, 3, *shape)).astype(np.int8)
    x[rng.random(x.shape) < 0.5] = 0  # sparse input
    x[3:] = rng.integers(-127, 128, size=(3, 3, *shape))  # and signed, dense
    y = rng.integers(0, spec.num_classes, size=6)
    host = hostbuild.run_host(binary, spec, x, y, learn=True, dump=True, frames=True)
    gold = hostbuild.golden_records(spec, x, y, learn=True, frames=True)
    assert hostbuild.first_mismatch(gold, host) is None
    records = gold["records"]
    assert any(r["steps"][-1][f"{spec.spiking[-1].name}.o"].any() for r in records)
    assert len(set(gold["hashes"].tolist())) > 3


@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547"])
def test_every_fast_kernel_matches_its_reference_in_qemu(board, tmp_path):
    from tess_keras.export import build as firmware_build
    from tess_keras.export import simulate

    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-g++") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-g++")
    tools = firmware_build.find_tools(board)
    subprocess.run([tools["cmake"], "-S", str(FIRMWARE), "-B", str(tmp_path), "-G", tools["generator"],
                    f"-DTESS_BOARD={board}", "-DTESS_KERNEL_CHECK=ON"], check=True, capture_output=True)
    subprocess.run([tools["cmake"], "--build", str(tmp_path)], check=True, capture_output=True)
    code, lines = simulate.run_console(simulate.qemu_command(board, tmp_path / "tess_firmware.elf"), timeout=600)
    report = json.loads([line for line in lines if "tess_kernel_check" in line][-1])
    assert report["path"] == ("mve" if board == HELIUM_BOARD else "dsp")
    for kernel in KERNELS + (HELIUM_KERNELS if board == HELIUM_BOARD else ()):
        cases, fast, mismatches = report[kernel]
        assert fast > 0 and mismatches == 0, (board, kernel, report[kernel])
    assert code == 0


# Code that runs only on the target: the Helium kernels (tess_forward_mve.cc, tess_update_mve.cc,
# tess_dw_mve.cc, tess_simd.h's tess_mve_* helpers, tess_fire_fast.cc's MVE blocks for the LIF update and the traces, tess_learn.cc's
# for the eligibility and the learning signal) on the M55, the assembly row loop of
# tess_forward_fast.cc and the update's assembly pair loop (tess_update_fast.cc) on the DSP
# cores. One planted error each, caught by the kernel check in QEMU on that board.
TARGET_MUTATIONS = [
    (HELIUM_BOARD, "tess_forward_mve.cc", "a[v] = vaddq_s16(a[v], row);",
     "a[v] = vaddq_s16(a[v], vaddq_s16(row, vdupq_n_s16(1)));", "currents"),
    (HELIUM_BOARD, "tess_forward_mve.cc", "a[v] = vmlaq_n_s32(a[v], row, value);",
     "a[v] = vmlaq_n_s32(a[v], row, value + 1);", "currents"),
    (HELIUM_BOARD, "tess_forward_mve.cc", "for (; i + 4 <= count; i += 4) vstrwq_s32(out + i, vldrhq_s32(lanes + i));",
     "for (; i + 4 <= count; i += 4) vstrwq_s32(out + i, vaddq_s32(vldrhq_s32(lanes + i), vdupq_n_s32(1)));",
     "currents"),
    (HELIUM_BOARD, "tess_forward_mve.cc", "bits |= (uint32_t)vcmpneq_n_u8(high, 0) << 16;",
     "bits |= (uint32_t)vcmpneq_n_u8(high, 0) << 15;", "currents"),
    (HELIUM_BOARD, "tess_fire_fast.cc", "current = vrshlq_s32(vmulhq_s32(a, mult), amount);",
     "current = vrshlq_s32(vmulhq_s32(a, mult), vaddq_s32(amount, vdupq_n_s32(1)));", "fire"),
    (HELIUM_BOARD, "tess_fire_fast.cc", "current = vrmulhq_s32(scaled, mult);", "current = vmulhq_s32(scaled, mult);",
     "fire"),
    (HELIUM_BOARD, "tess_fire_fast.cc", "vrshrq_n_s32(vmulq_n_s32(kept, gamma), 15)",
     "vshrq_n_s32(vmulq_n_s32(kept, gamma), 15)", "fire"),
    (HELIUM_BOARD, "tess_fire_fast.cc", "vrshrq_n_s32(vmulq_n_s32(vldrhq_z_s32(q + i, p), lambda_pre), 15)",
     "vshrq_n_s32(vmulq_n_s32(vldrhq_z_s32(q + i, p), lambda_pre), 15)", "traces"),
    (HELIUM_BOARD, "tess_simd.h", "return vrshrq_n_s32(vmulq_n_s32(rest, scale), TESS_U_FRAC);",
     "return vrshrq_n_s32(vmulq_n_s32(rest, scale), TESS_U_FRAC - 1);", "traces"),
    (HELIUM_BOARD, "tess_learn.cc", "vqrdmulhq_s32(g, vshlq_n_s32(v, 16))", "vqrdmulhq_s32(g, vshlq_n_s32(v, 15))",
     "eligibility"),
    (HELIUM_BOARD, "tess_learn.cc", "pair = vqmovntq_s32(pair, ", "pair = vmovntq_s32(pair, ", "eligibility"),
    (HELIUM_BOARD, "tess_dw_mve.cc", '"vmladav.s16 %[a3], q4, q0\\n\\t"', '"vmladav.s16 %[a3], q3, q0\\n\\t"', "dw"),
    (HELIUM_BOARD, "tess_dw_mve.cc", "vrshlq_s32(pair.val[1], down)", "vshlq_s32(pair.val[1], down)", "dw"),
    (HELIUM_BOARD, "tess_dw_mve.cc", "out += words - 1) *out = value;", "out += words) *out = value;", "dw"),
    (HELIUM_BOARD, "tess_dw_mve.cc", "vldrwq_u32(at + 3 * co)}", "vldrwq_u32(at + 2 * co)}", "dw"),
    (HELIUM_BOARD, "tess_learn.cc", "k == 0 ? (mve_pred16_t)0xFFF0u", "k == 0 ? (mve_pred16_t)0xFFF1u", "signal"),
    (HELIUM_BOARD, "tess_learn.cc", "vldrwq_s32(cells + 8 * byte + 4), kLanes[bits >> 4]",
     "vldrwq_s32(cells + 8 * byte + 4), kLanes[bits >> 3]", "signal"),
    (HELIUM_BOARD, "tess_learn.cc", "high = vaddq_m_n_s32(high, high, (int32_t)twice, kLanes[bits >> 4]);",
     "high = vaddq_m_n_s32(high, high, (int32_t)twice + 1, kLanes[bits >> 4]);", "signal"),
    ("mps2-an386", "tess_forward_fast.cc", '"ldr %[word], [%[w], #12]\\n\\t"', '"ldr %[word], [%[w], #11]\\n\\t"',
     "currents"),
    ("mps2-an386", "tess_update_fast.cc", '"rsb lr, lr, r0, lsr #16\\n\\t"', '"rsb lr, lr, r0, lsr #15\\n\\t"',
     "update"),
    ("mps2-an386", "tess_update_fast.cc", '"mvn lr, #0x007E007E\\n\\t"', '"mvn lr, #0x007F007F\\n\\t"', "update"),
    ("mps2-an386", "tess_update_fast.cc", '"movs r1, #0\\n\\t"', '"movs r1, #1\\n\\t"', "update"),
    ("mps2-an386", "tess_update_fast.cc", '"pkhbt r0, r0, r1, lsl #16\\n\\t"', '"pkhbt r0, r0, r1, lsl #15\\n\\t"',
     "update"),
    (HELIUM_BOARD, "tess_update_mve.cc", "x = veorq_u32(x, vshrq_n_u32(x, 15));",
     "x = veorq_u32(x, vshrq_n_u32(x, 14));", "update"),
    (HELIUM_BOARD, "tess_update_mve.cc", "down[j] = (int16_t)-shift[c];", "down[j] = (int16_t)(1 - shift[c]);",
     "update"),
    (HELIUM_BOARD, "tess_update_mve.cc", "vrshlq_s32(vmulltq_int_s16(acc, l.mult), vshrq_n_s32(l.down, 16));",
     "vrshlq_s32(vmulltq_int_s16(acc, l.mult), l.down);", "update"),
    (HELIUM_BOARD, "tess_update_mve.cc", "vqnegq_s8(vqnegq_s8(vqmovnbq_s16(vreinterpretq_s8_s16(steps), sum)));",
     "vqmovnbq_s16(vreinterpretq_s8_s16(steps), sum);", "update"),
    (HELIUM_BOARD, "tess_update_mve.cc", "const mve_pred16_t p = vctp16q((uint32_t)n);",
     "const mve_pred16_t p = vctp16q((uint32_t)n + 1u);", "update"),
    (HELIUM_BOARD, "tess_update_mve.cc", "const uint32_t limit = (1u << (31 - up)) - 1u;",
     "const uint32_t limit = 1u << (31 - up);", "update"),
]


@pytest.mark.slow
@pytest.mark.parametrize("board, name, original, planted, kernel", TARGET_MUTATIONS,
                         ids=[f"{m[0]}-{m[4]}-{i}" for i, m in enumerate(TARGET_MUTATIONS)])
def test_an_off_by_one_in_target_only_code_is_caught_in_qemu(board, name, original, planted, kernel, tmp_path):
    from tess_keras.export import build as firmware_build
    from tess_keras.export import simulate

    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-g++") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-g++")
    firmware = tmp_path / "firmware"  # a copy: the kernel check builds the runtime next to it
    shutil.copytree(FIRMWARE, firmware, ignore=shutil.ignore_patterns("build*"))
    runtime = firmware / "runtime"
    text = (runtime / name).read_text()
    assert text.count(original) == 1, f"{name} no longer holds the line this test plants an error in"
    (runtime / name).write_text(text.replace(original, planted))
    tools = firmware_build.find_tools(board)
    build = tmp_path / "build"
    subprocess.run([tools["cmake"], "-S", str(firmware), "-B", str(build), "-G", tools["generator"],
                    f"-DTESS_BOARD={board}", "-DTESS_KERNEL_CHECK=ON"], check=True, capture_output=True)
    subprocess.run([tools["cmake"], "--build", str(build)], check=True, capture_output=True)
    code, lines = simulate.run_console(simulate.qemu_command(board, build / "tess_firmware.elf"), timeout=600)
    report = json.loads([line for line in lines if "tess_kernel_check" in line][-1])
    assert report["path"] == ("mve" if board == HELIUM_BOARD else "dsp")
    assert code != 0 and report[kernel][2] > 0, report
