"""Measured train-step memory: TESS stays flat in T, BPTT grows with T."""

import keras
import pytest

from tess_keras.layers import Readout, SpikingConv2D
from tess_keras.memory import StepMeasurement, measure_train_step, profile_train_steps
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


def test_tess_step_memory_is_flat_in_time_while_bptt_grows():
    net = conv_net()
    jobs = [
        {"rule": rule, "time_steps": steps, "batch_size": BATCH, "input_shape": INPUT_SHAPE, "model": net}
        for rule in ("tess", "bptt")
        for steps in (5, 40)
    ]
    jobs[0]["timed_steps"] = 1
    # Two at a time: each is its own process, so the numbers do not mix.
    tess_5, tess_40, bptt_5, bptt_40 = profile_train_steps(jobs, timeout=300, workers=2)
    mib = {f"{m.rule['name']} T={m.time_steps}": round(m.peak_bytes / 2**20, 1) for m in (tess_5, tess_40, bptt_5, bptt_40)}

    # Something was measured: the step's temporaries are megabytes.
    assert tess_5.peak_bytes > 2**20, mib
    # TESS keeps O(n) traces only: 8x the time steps, (nearly) the same memory.
    assert tess_40.peak_bytes < 1.3 * tess_5.peak_bytes, mib
    # BPTT stores every step's activations: its memory grows with T.
    assert bptt_40.peak_bytes > 3 * bptt_5.peak_bytes, mib
    assert bptt_40.peak_bytes > 5 * tess_40.peak_bytes, mib

    assert tess_5.method == "rss-hwm" and tess_5.device == "CPU"
    assert tess_5.rule["alpha_post"] == 1.0 and bptt_5.rule == {"name": "bptt"}
    assert len(tess_5.step_seconds) == 1 and tess_5.samples_per_second > 0
    assert tess_40.step_seconds == [] and tess_40.samples_per_second == 0.0


def test_throughput_uses_the_median_step():
    measurement = StepMeasurement({"name": "tess"}, 5, 8, 1, 1, [4.0, 1.0, 2.0], [2.0, 2.0, 8.0], "CPU", "rss-hwm")
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
