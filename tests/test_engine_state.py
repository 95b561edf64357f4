"""tess_save_state / tess_load_state of the generated engine on the host: a
saved state reloads into a cleared model bit for bit (same state hash, same
predictions), and a corrupt (any single bit flipped), truncated, foreign
(another model) or other-version buffer is refused with its error status and
leaves the model unchanged. Also the per-layer names and synaptic-event
counts the profile reads."""

import shutil
import subprocess
import zlib

import numpy as np
import pytest

from tess_keras.export import codegen, hostbuild
from tess_keras.export.spec import build_spec

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (apt-get install g++)")

PROGRAM = r"""
#include <cstdio>
#include <vector>
#include "tess_engine.h"

// Learns from a fixed pseudo-random stream; "save FILE" writes the state, "load FILE" clears
// the model, loads FILE and prints the status, then (if loaded) the hash and one prediction.
static void learn(int samples) {
  uint32_t x = 12345u;
  std::vector<int8_t> input(TESS_INPUT_SIZE);
  for (int s = 0; s < samples; ++s) {
    tess_reset();
    for (int t = 0; t < TESS_TIME_STEPS; ++t) {
      for (auto &v : input) { x = x * 1664525u + 1013904223u; v = (int8_t)((x >> 24) % 200 - 100); }
      tess_step(input.data(), s % TESS_NUM_CLASSES);
    }
    tess_apply_update();
  }
}

int main(int argc, char **argv) {
  learn(6);
  if (argc == 3 && argv[1][0] == 's') {
    std::vector<uint8_t> state(tess_state_size());
    uint32_t written = 0;
    if (tess_save_state(state.data(), (uint32_t)state.size() - 1, &written) != TESS_ERROR_BUFFER_TOO_SMALL) return 5;
    if (tess_save_state(nullptr, 0, &written) != TESS_ERROR_NULL) return 5;
    const int status = tess_save_state(state.data(), (uint32_t)state.size(), &written);
    FILE *f = std::fopen(argv[2], "wb");
    std::fwrite(state.data(), 1, written, f);
    std::fclose(f);
    learn(2);  // learning continues identically after a reload: same generator counter
    std::printf("%d %08x\n", status, tess_state_hash());
    return 0;
  }
  std::vector<uint8_t> state(1 << 20);
  FILE *f = std::fopen(argv[2], "rb");
  const uint32_t length = (uint32_t)std::fread(state.data(), 1, state.size(), f);
  std::fclose(f);
  tess_clear_state();
  const uint32_t cleared = tess_state_hash();
  const int status = tess_load_state(state.data(), length);
  if (status != TESS_OK) {
    std::printf("%d %d\n", status, tess_state_hash() == cleared ? 1 : 0);
    return 0;
  }
  learn(2);
  std::printf("%d %08x\n", status, tess_state_hash());
  return 0;
}
"""


def small_model(units=12):
    import keras

    from tess_keras.layers import Readout, SpikingConv2D, SpikingDense
    from tess_keras.models import SpikingSequential
    from tess_keras.rules import TESS

    keras.utils.set_random_seed(3)
    model = SpikingSequential(
        [
            SpikingConv2D(6, 3, strides=2, padding="same", lsg_pool=1, name="c1"),
            keras.layers.MaxPooling2D(2, strides=1, padding="same", name="p1"),
            keras.layers.Flatten(name="flat"),
            SpikingDense(units, name="d1"),
            Readout(5, name="out"),
        ],
        rule=TESS(),
    )
    model.build((None, None, 9, 9, 2))
    return model


def spec_of(model):
    return build_spec(model, input_scale=1 / 127, time_steps=4, learn=["c1", "d1", "out"], learning_rate=0.05)


def compile_program(spec, directory):
    directory.mkdir()
    codegen.write_engine(spec, directory)
    (directory / "state_test.cc").write_text(PROGRAM)
    return hostbuild.compile_engine(directory, [directory / "state_test.cc"], directory / "state_test",
                                    hostbuild.host_flags())


def run(binary, *args):
    out = subprocess.run([str(binary), *map(str, args)], check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), out[1]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    binary = compile_program(spec_of(small_model()), root / "a")
    other = compile_program(spec_of(small_model(units=10)), root / "b")
    state = root / "state.bin"
    status, hash_after = run(binary, "save", state)
    assert status == 0
    return binary, other, state, hash_after


def test_saved_state_reloads_bit_for_bit_and_learning_continues(engines):
    binary, _, state, hash_after = engines
    data = state.read_bytes()
    assert data[:4] == b"TESS" and int.from_bytes(data[4:6], "little") == 1
    assert int.from_bytes(data[-4:], "little") == zlib.crc32(data[:-4])  # the CRC is zlib's CRC32
    assert run(binary, "load", state) == (0, hash_after)


def corrupt(tmp_path, data, name):
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def test_every_kind_of_bad_buffer_is_refused_and_changes_nothing(engines, tmp_path):
    binary, other, state, _ = engines
    data = bytearray(state.read_bytes())
    rng = np.random.default_rng(1)
    # single bit flips: header (magic, version, model id, sizes, counter), payload and CRC
    positions = sorted({0, 4, 6, 8, 12, 16, len(data) - 1, *rng.integers(20, len(data) - 4, size=6).tolist()})
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(0, 8))
        status, unchanged = run(binary, "load", corrupt(tmp_path, flipped, f"flip{position}.bin"))
        assert status != 0 and unchanged == "1", position
    assert run(binary, "load", corrupt(tmp_path, data[:-1], "short.bin"))[0] == 3  # TESS_ERROR_TRUNCATED
    assert run(binary, "load", corrupt(tmp_path, data[:10], "header.bin"))[0] == 3
    wrong_version = bytearray(data)
    wrong_version[4:6] = (2).to_bytes(2, "little")
    wrong_version[-4:] = zlib.crc32(bytes(wrong_version[:-4])).to_bytes(4, "little")  # valid CRC, other version
    assert run(binary, "load", corrupt(tmp_path, wrong_version, "v2.bin")) == (5, "1")  # TESS_ERROR_VERSION
    payload = bytearray(data)
    payload[30] ^= 0x01
    assert run(binary, "load", corrupt(tmp_path, payload, "payload.bin")) == (7, "1")  # TESS_ERROR_CHECKSUM
    assert run(other, "load", state) == (6, "1")  # TESS_ERROR_OTHER_MODEL: another network's state


STATUS_PROGRAM = r"""
#include <cstdio>
#include <vector>
#include "tess_engine.h"

// The status of every tess_model_* call on bad arguments, and that a refused step changes nothing.
int main() {
  std::vector<int8_t> input(TESS_INPUT_SIZE, 1);
  int32_t predicted = 0;
  uint32_t value = 0;
  const int32_t *logits = nullptr;
  tess_model_reset(&tess_model);
  const int before = tess_model_step(&tess_model, input.data(), TESS_NUM_CLASSES);  // a label out of range
  const int below = tess_model_step(&tess_model, input.data(), -2);
  const bool unchanged = tess_model.t == 0;
  std::printf("%d %d %d %d %d %d %d %d %d %d %d %d %d\n", before, below, unchanged ? 1 : 0,
              tess_model_step(&tess_model, nullptr, 0), tess_model_step(nullptr, input.data(), 0),
              tess_model_step(&tess_model, input.data(), 0), tess_model_step(&tess_model, input.data(), -1),
              tess_model_predict(&tess_model, nullptr), tess_model_predict(&tess_model, &predicted),
              tess_model_logits(&tess_model, &logits), tess_model_synaptic_events(&tess_model, TESS_NUM_LAYERS, input.data(), &value),
              tess_model_synaptic_events(&tess_model, 0, input.data(), &value), tess_model_state_hash(nullptr, &value));
  return 0;
}
"""


def test_every_model_call_reports_bad_arguments(tmp_path):
    """A label outside [-1, classes) is refused (TESS_ERROR_LABEL, nothing runs), NULLs give TESS_ERROR_NULL,
    a layer out of range TESS_ERROR_LAYER; good calls return TESS_OK."""
    spec = spec_of(small_model())
    codegen.write_engine(spec, tmp_path)
    (tmp_path / "status.cc").write_text(STATUS_PROGRAM)
    binary = hostbuild.compile_engine(tmp_path, [tmp_path / "status.cc"], tmp_path / "status", hostbuild.host_flags())
    out = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout.split()
    assert [int(v) for v in out] == [8, 8, 1, 1, 1, 0, 0, 1, 0, 0, 9, 0, 1]
