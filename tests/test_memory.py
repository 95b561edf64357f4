"""Measured train-step memory: TESS stays flat in T, BPTT grows with T, and
the figures repeat within 2 % from process to process and under CPU load."""

import os
import subprocess
import sys

import keras
import pytest

from tess_keras.layers import Readout, SpikingConv2D
from tess_keras.memory import MeasurementError, StepMeasurement, StepPeak, measure_train_step, profile_train_steps
from tess_keras.models import SpikingSequential

# Two 32-channel spiking convs on 32x32x2 frames, batch 16: BPTT keeps every
# step's 32x32x32 and 16x16x32 maps (about 10 MB per step) for its backward
# pass, which dwarfs the per-step temporaries every rule needs.
INPUT_SHAPE = (32, 32, 2)
BATCH = 16


def conv_net():
    return SpikingSequential(
        [
            SpikingConv2D(32, 3, lsg_pool=2, name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            SpikingConv2D(32, 3, lsg_pool=2, name="conv2"),
            keras.layers.MaxPooling2D(4, name="pool2"),
            keras.layers.Flatten(name="flatten"),
            Readout(10, name="readout"),
        ]
    )


def grid_jobs(net, repeats=()):
    """TESS and BPTT at T = 5 and 40, plus a second measurement of each
    ``(rule, T)`` in ``repeats`` (each job is a fresh process)."""
    plan = [(rule, steps) for rule in ("tess", "bptt") for steps in (5, 40)] + list(repeats)
    return [
        {"rule": rule, "time_steps": steps, "batch_size": BATCH, "input_shape": INPUT_SHAPE, "model": net}
        for rule, steps in plan
    ]


def by_name(measurements):
    return {f"{m.rule['name']} T={m.time_steps}": m for m in measurements}


def assert_flat_tess_growing_bptt(figures):
    mib = {name: round(m.peak_bytes / 2**20, 2) for name, m in figures.items()}
    tess_5, tess_40, bptt_5, bptt_40 = (figures[n].peak_bytes for n in ("tess T=5", "tess T=40", "bptt T=5", "bptt T=40"))
    # Something was measured: the step's temporaries are megabytes.
    assert tess_5 > 2**20, mib
    # TESS keeps O(n) traces only: 8x the time steps, the same memory.
    assert abs(tess_40 - tess_5) < 0.02 * tess_5, mib
    # BPTT stores every step's activations: its memory grows with T.
    assert bptt_40 > 3 * bptt_5, mib
    assert bptt_40 > 5 * tess_40, mib
    return mib


def within_2_percent(first, second):
    return abs(first - second) <= 0.02 * max(first, second)


@pytest.fixture(scope="module")
def idle_figures():
    """The grid measured once, with a repeat of TESS T=5 and BPTT T=40, and
    one timed step of TESS T=5."""
    jobs = grid_jobs(conv_net(), repeats=[("tess", 5), ("bptt", 40)])
    jobs[0]["timed_steps"] = 1
    measurements = profile_train_steps(jobs, timeout=900, workers=2)
    return by_name(measurements[:4]), measurements[4:]


def test_tess_step_memory_is_flat_in_time_while_bptt_grows(idle_figures):
    figures, (tess_5_again, bptt_40_again) = idle_figures
    mib = assert_flat_tess_growing_bptt(figures)
    # Each figure is the step's own allocations: a second process repeats it.
    assert within_2_percent(figures["tess T=5"].peak_bytes, tess_5_again.peak_bytes), (mib, tess_5_again.peak_bytes)
    assert within_2_percent(figures["bptt T=40"].peak_bytes, bptt_40_again.peak_bytes), (mib, bptt_40_again.peak_bytes)

    tess_5, tess_40, bptt_5 = figures["tess T=5"], figures["tess T=40"], figures["bptt T=5"]
    assert tess_5.method == "memray" and tess_5.device == "CPU"
    assert tess_5.rule["alpha_post"] == 1.0 and bptt_5.rule == {"name": "bptt"}
    # The weights, Adam's slots and the input batch are held before the step;
    # the T=40 batch is 8x the T=5 one (16 x T x 32 x 32 x 2 float32).
    assert tess_40.baseline_bytes - tess_5.baseline_bytes == BATCH * 35 * 32 * 32 * 2 * 4
    assert len(tess_5.step_seconds) == 1 and tess_5.samples_per_second > 0
    assert tess_40.step_seconds == [] and tess_40.samples_per_second == 0.0


def cpu_seconds(pid):
    """User + system CPU time of a running process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="counts the burners' CPU time in /proc")
def test_memory_figures_hold_beside_two_cpu_burners(idle_figures):
    """Two busy loops compete for the cores (as on a loaded CI machine): the
    same grid gives the same figures, within 2 %."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = by_name(profile_train_steps(grid_jobs(conv_net()), timeout=900, workers=2))
        burned = [cpu_seconds(burner.pid) for burner in burners]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert min(burned) > 5, f"the burners barely ran ({burned} CPU s), so this measured no load"
    mib = assert_flat_tess_growing_bptt(loaded)
    idle = {name: round(m.peak_bytes / 2**20, 2) for name, m in idle_figures[0].items()}
    for name, measurement in loaded.items():
        assert within_2_percent(measurement.peak_bytes, idle_figures[0][name].peak_bytes), (name, mib, idle)


def test_cpu_measurement_without_memray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "memray", None)  # import memray -> ImportError
    with pytest.raises(MeasurementError, match="pip install memray"):
        StepPeak().start()


def test_throughput_uses_the_median_step():
    measurement = StepMeasurement({"name": "tess"}, 5, 8, 1, 1, [4.0, 1.0, 2.0], [2.0, 2.0, 8.0], "CPU", "memray")
    assert measurement.samples_per_second == 4.0
    assert measurement.samples_per_cpu_second == 4.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"time_steps": 0}, "time_steps"),
        ({"device": "tpu"}, "device"),
        ({"rule": "sgd"}, "Unknown learning rule"),
        ({"model": "resnet"}, "Unknown model"),
    ],
)
def test_bad_arguments_are_rejected_before_any_process_starts(kwargs, message):
    arguments = {"rule": "tess", "time_steps": 5, "batch_size": 4, "input_shape": (8, 8, 1), **kwargs}
    with pytest.raises(ValueError, match=message):
        measure_train_step(**arguments)
