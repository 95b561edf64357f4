"""Preprocessing throughput of the event pipeline on CIFAR10-DVS-sized recordings.

Writes RECORDINGS real AEDAT4 files (dv-processing's writer) in the
CIFAR10-DVS layout: 128x128 sensor, EVENTS events each over 1.3 s (our
assumption of a typical CIFAR10-DVS recording; the cost grows linearly with
the event count), events uniformly spread over the sensor (the per-event cost of decoding, downsampling
and binning does not depend on where events land). Then measures, in samples
per second:

- first pass: ``load_dataset("cifar10-dvs")`` with an empty cache: tonic's
  AEDAT4 reader, ``Downsample`` to 48x48, ``ToFrame`` into T = 10 bins and the
  cache write (the recipe's settings), on the default thread pool, and again
  with ``TESS_DATA_WORKERS`` = one spawned worker process per CPU. CPU
  milliseconds per sample are reported too: unlike wall time they do not
  depend on what else the machine is running;
- cached pass: the same call again (memory-maps the cache) plus reading every
  frame once;
- tf.data epoch: five passes of ``make_tf_dataset(..., augment=True)`` over
  the cached training set (batch 64, crop pad 4), i.e. what each training
  epoch pays for input.

Usage:
    python bench/data_bench.py [--recordings 100] [--events 200000] [--json bench/results/data_bench.json]
"""

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def write_recordings(root, count, events, duration_ms=1300):
    """``count`` AEDAT4 files spread over the ten CIFAR10-DVS class folders."""
    import dv_processing as dv

    from tess_keras.data.catalog import CIFAR10_DVS_CLASSES

    for index in range(count):
        class_name = CIFAR10_DVS_CLASSES[index % 10]
        path = Path(root) / "CIFAR10DVS" / class_name / f"cifar10_{class_name}_{index // 10}.aedat4"
        path.parent.mkdir(parents=True, exist_ok=True)
        store = dv.data.generate.uniformEventsWithinTimeRange(
            1_000_000, datetime.timedelta(milliseconds=duration_ms), (128, 128), events, index)
        writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("bench", (128, 128)))
        writer.writeEvents(store)
        del writer


EPOCHS = 5  # tf.data passes timed together, so start-up does not dominate a small training set


def cpu_seconds():
    """CPU time (user + system) of this process and of its finished children."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def run(recordings, events, time_steps=10, size=48, batch_size=64):
    import numpy as np

    from tess_keras import data
    from tess_keras.data import events as events_module

    with tempfile.TemporaryDirectory() as root:
        write_recordings(root, recordings, events)
        file_bytes = sum(p.stat().st_size for p in Path(root).rglob("*.aedat4"))

        # First pass twice, each into its own empty cache: default thread pool, then worker processes.
        os.environ["TESS_CACHE_DIR"] = str(Path(root) / "cache-threads")
        os.environ.pop("TESS_DATA_WORKERS", None)
        cpu_before = cpu_seconds()
        start = time.perf_counter()
        data.load_dataset("cifar10-dvs", root, time_steps=time_steps, size=size)
        first_threads = time.perf_counter() - start
        cpu_threads = cpu_seconds()[0] - cpu_before[0]

        os.environ["TESS_CACHE_DIR"] = str(Path(root) / "cache-processes")
        os.environ["TESS_DATA_WORKERS"] = str(os.cpu_count())
        events_module.PROCESS_POOL_MIN_ITEMS = 1
        cpu_before = cpu_seconds()
        start = time.perf_counter()
        splits = data.load_dataset("cifar10-dvs", root, time_steps=time_steps, size=size)
        first = time.perf_counter() - start
        cpu_workers = cpu_seconds()[1] - cpu_before[1]

        start = time.perf_counter()
        cached = data.load_dataset("cifar10-dvs", root, time_steps=time_steps, size=size)
        checksum = int(np.asarray(cached.x_train).sum(dtype=np.int64) + np.asarray(cached.x_test).sum(dtype=np.int64))
        second = time.perf_counter() - start

        pipeline = data.make_tf_dataset(cached, "train", batch_size, shuffle=True, augment=True)
        for _ in pipeline.take(1):  # build the pipeline and its threads once
            pass
        start = time.perf_counter()
        seen = sum(int(x.shape[0]) for x, _ in pipeline.repeat(EPOCHS))
        epoch = time.perf_counter() - start

        samples = len(splits.y_train) + len(splits.y_test)
        return {
            "recordings": recordings,
            "events_per_recording": events,
            "aedat4_megabytes": round(file_bytes / 1e6, 1),
            "time_steps": time_steps,
            "frame_size": size,
            "first_pass_seconds": round(first_threads, 3),
            "first_pass_samples_per_s": round(samples / first_threads, 1),
            "first_pass_cpu_ms_per_sample": round(1000 * cpu_threads / samples, 1),
            "first_pass_workers": os.cpu_count(),
            "first_pass_workers_seconds": round(first, 3),
            "first_pass_workers_samples_per_s": round(samples / first, 1),
            "first_pass_workers_cpu_ms_per_sample": round(1000 * cpu_workers / samples, 1),
            "cached_pass_seconds": round(second, 4),
            "cached_pass_samples_per_s": round(samples / second, 1),
            "tf_data_epoch_samples_per_s": round(seen / epoch, 1),
            "frames_checksum": checksum,
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "load_average_at_end": round(os.getloadavg()[0], 2),
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=100)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "data_bench.json")
    args = parser.parse_args()
    result = run(args.recordings, args.events)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.json)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
