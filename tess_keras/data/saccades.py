"""Simulated event camera: images recorded the way N-MNIST was (three saccades).

N-MNIST (Orchard et al. 2015) was recorded by moving an ATIS sensor in front
of a screen along three saccades forming a triangle. This module does the same
for any grey-level images: the image is placed on a square sensor and moved
along ``(0,0) -> (1.5,3) -> (3,0) -> (0,0)`` pixels, 100 ms per saccade. An ideal
DVS pixel emits an event each time its log intensity has moved by its contrast
threshold since its last event: ON for an increase, OFF for a decrease; the
event time is where the linear change crossed the threshold. Per-pixel
thresholds carry a fixed mismatch and the sensor adds background-activity
noise, both drawn from ``seed``, so a seed gives one deterministic dataset.

Recordings are simulated in 3 ms steps for a chunk of images at once (the
motion is common to every sample), binned into T frames of 300 ms / T and
cached in the frame cache. ``digits-dvs`` (8x8 digits on a 24x24 sensor) and
``mnist-dvs`` (28x28 MNIST on a 34x34 sensor, N-MNIST's size) are both built
with ``load_saccade_frames``.
"""

import dataclasses
import hashlib

import numpy as np

from tess_keras.data.base import DatasetSplits, resolve_data_dir
from tess_keras.data.cache import FrameCache

SACCADE_VERTICES = ((0.0, 0.0), (1.5, 3.0), (3.0, 0.0), (0.0, 0.0))  # (x, y) pixels
SACCADE_US = 100_000
DURATION_US = SACCADE_US * (len(SACCADE_VERTICES) - 1)
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])  # tonic.io.events_struct
PAD = 4  # canvas border, larger than any saccade displacement


@dataclasses.dataclass(frozen=True)
class Camera:
    """The simulated sensor and scene.

    Attributes:
        sensor: sensor side in pixels.
        image: image side on the sensor (images must already have this size).
        step_us: simulation step.
        contrast_threshold: log-intensity step per event.
        threshold_mismatch: std of the per-pixel threshold.
        noise_rate_hz: background activity per pixel.
        background: scene intensity where there is no ink (keeps log finite).
    """

    sensor: int
    image: int
    step_us: int = 3_000
    contrast_threshold: float = 0.25
    threshold_mismatch: float = 0.03
    noise_rate_hz: float = 0.5
    background: float = 0.2

    @property
    def margin(self):
        """Image origin on the sensor; leaves room for the 3 px saccades."""
        return (self.sensor - self.image) // 2 - 2

    def fingerprint(self):
        """Short hash of every constant that changes the recordings (part of the cache key)."""
        values = (self.sensor, self.image, self.step_us, self.contrast_threshold, self.threshold_mismatch,
                  self.noise_rate_hz, self.background)
        return hashlib.sha1(repr(values).encode()).hexdigest()[:8]


def saccade_offset(t_us):
    """Saccade displacement (x, y) at time ``t_us``."""
    segment = min(int(t_us // SACCADE_US), len(SACCADE_VERTICES) - 2)
    fraction = (t_us - segment * SACCADE_US) / SACCADE_US
    (x0, y0), (x1, y1) = SACCADE_VERTICES[segment], SACCADE_VERTICES[segment + 1]
    return x0 + fraction * (x1 - x0), y0 + fraction * (y1 - y0)


def _render(canvas, offset, camera):
    """Log intensity on the sensor with the scene shifted by a sub-pixel ``offset`` (bilinear)."""
    dx, dy = offset
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = np.float32(dx - ix), np.float32(dy - iy)
    side = camera.sensor

    def window(sx, sy):
        return canvas[:, PAD - sy: PAD - sy + side, PAD - sx: PAD - sx + side]

    image = ((1 - fx) * (1 - fy) * window(ix, iy) + fx * (1 - fy) * window(ix + 1, iy)
             + (1 - fx) * fy * window(ix, iy + 1) + fx * fy * window(ix + 1, iy + 1))
    return np.log(np.float32(camera.background) + np.float32(1 - camera.background) * image)


def _noise(camera, seed, index):
    """Background-activity events of sample ``index``: depend only on ``(seed, index)``."""
    rng = np.random.default_rng([seed, 1, int(index)])
    side = camera.sensor
    n = rng.poisson(camera.noise_rate_hz * side * side * DURATION_US / 1e6)
    return rng.integers(0, side, n), rng.integers(0, side, n), rng.integers(0, DURATION_US, n), rng.integers(0, 2, n)


def simulate_events(images, camera, seed=0, indices=None):
    """Event-camera recordings of ``images`` (``[N, camera.image, camera.image]`` in [0, 1]).

    Args:
        images: the scenes to record.
        camera: the ``Camera``.
        seed: draws the sensor's threshold mismatch and noise.
        indices: dataset index of each image (default ``0..N-1``); the noise
            of a sample depends only on ``(seed, index)``, so a recording is
            the same whichever batch it is simulated in.

    Returns:
        a list of tonic event arrays (``x, y, t, p``; t in microseconds),
        each sorted by time.
    """
    count, side, start = len(images), camera.sensor, camera.margin
    if images.shape[1:] != (camera.image, camera.image):
        raise ValueError(f"images must be {camera.image}x{camera.image}, not {images.shape[1:]}")
    indices = np.arange(count) if indices is None else np.asarray(indices)
    sensor_rng = np.random.default_rng([seed, 0])
    thresholds = np.clip(camera.contrast_threshold + camera.threshold_mismatch * sensor_rng.standard_normal((2, side, side)),
                         0.05, None).astype(np.float32)  # [OFF, ON] per pixel
    canvas = np.zeros((count, side + 2 * PAD, side + 2 * PAD), np.float32)
    canvas[:, PAD + start: PAD + start + camera.image, PAD + start: PAD + start + camera.image] = images
    previous = _render(canvas, saccade_offset(0), camera)
    reference = previous.copy()  # log intensity at each pixel's last event
    parts = []
    for step in range(1, DURATION_US // camera.step_us + 1):
        t_now = step * camera.step_us
        current = _render(canvas, saccade_offset(t_now), camera)
        change = current - reference
        on = change > 0
        threshold = np.where(on, thresholds[1], thresholds[0])  # [N, H, W]
        crossings = np.floor(np.abs(change) / threshold).astype(np.int64)
        sample, y, x = np.nonzero(crossings)
        if len(sample):
            n = crossings[sample, y, x]
            sign = np.where(on[sample, y, x], 1.0, -1.0).astype(np.float32)
            step_threshold = threshold[sample, y, x]
            # k-th crossing of each pixel in this step, timed by linear interpolation.
            repeat = np.repeat(np.arange(len(n)), n)
            k = np.arange(len(repeat)) - np.repeat(np.cumsum(n) - n, n) + 1
            level = reference[sample, y, x][repeat] + (sign * step_threshold)[repeat] * k
            begin, end = previous[sample, y, x][repeat], current[sample, y, x][repeat]
            fraction = np.clip((level - begin) / np.where(end == begin, 1.0, end - begin), 0.0, 1.0)
            times = np.round(t_now - camera.step_us + fraction * camera.step_us).astype(np.int64)
            parts.append((sample[repeat], x[repeat], y[repeat], times, (sign[repeat] > 0).astype(np.int64)))
            reference[sample, y, x] += sign * n * step_threshold
        previous = current
    for i, index in enumerate(indices):
        nx, ny, nt, npol = _noise(camera, seed, index)
        parts.append((np.full(len(nx), i), nx, ny, nt, npol))
    sample, x, y, t, p = (np.concatenate([part[c] for part in parts]) for c in range(5))
    order = np.lexsort((t, sample))  # by sample, then time (stable)
    events = np.empty(len(order), EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x[order], y[order], t[order], p[order]
    bounds = np.searchsorted(sample[order], np.arange(count + 1))
    return [events[bounds[i]:bounds[i + 1]].copy() for i in range(count)]


def record(images, camera, seed=0, indices=None, chunk=256):
    """``simulate_events`` over the images at ``indices`` (all by default), ``chunk`` at a time."""
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    recordings = []
    for start in range(0, len(indices), chunk):
        part = indices[start:start + chunk]
        recordings += simulate_events(images[part], camera, seed=seed, indices=part)
    return recordings


def load_saccade_frames(name, scenes, camera, data_dir, time_steps, seed, size, num_classes=10, sources=(), chunk=256):
    """Frames ``[N, T, H, W, 2]`` of recorded ``images``, generated once and cached.

    Args:
        name: dataset name (the cache entry's prefix).
        scenes: ``scenes()`` returns ``(images, labels, train, test)``: the
            ``[N, camera.image, camera.image]`` images in [0, 1], their ``[N]``
            integer labels and the indices of the training and test samples.
            Called only when the frames are not cached yet.
        camera: the ``Camera``.
        data_dir: datasets folder (the cache lives in its ``.tess-cache``).
        time_steps: T bins over the 300 ms recording.
        seed: sensor mismatch and noise (the caller's split should come from it too).
        size: frame ``(H, W)`` (the sensor is downsampled to it).
        num_classes: classes of ``labels``.
        sources: files the images come from (their fingerprint is part of the cache key).
        chunk: images simulated together (memory vs speed).

    Returns:
        a ``DatasetSplits`` with ``encoding="frames"``.
    """
    from tess_keras.data.events import to_frames

    settings = {"T": time_steps, "size": size, "seed": seed, "sim": camera.fingerprint()}
    cache = FrameCache(resolve_data_dir(data_dir), name, settings, list(sources))
    frame_shape = (time_steps, *size, 2)
    arrays = cache.load()
    if arrays is None:
        images, labels, train, test = scenes()
        window = DURATION_US / time_steps
        side = camera.sensor

        def fill(out):
            for subset, chosen in (("train", np.asarray(train)), ("test", np.asarray(test))):
                order = np.argsort(chosen, kind="stable")  # simulate in dataset order, write in split order
                for start in range(0, len(order), chunk):
                    rows = order[start:start + chunk]
                    recordings = simulate_events(images[chosen[rows]], camera, seed=seed, indices=chosen[rows])
                    for row, recording in zip(rows, recordings):
                        out[f"x_{subset}"][row] = to_frames(recording, (side, side, 2), size, time_steps,
                                                            time_window=window, start_time=0)
                out[f"y_{subset}"][:] = labels[chosen]

        arrays = cache.build({
            "x_train": ((len(train), *frame_shape), np.uint8), "y_train": ((len(train),), np.int32),
            "x_test": ((len(test), *frame_shape), np.uint8), "y_test": ((len(test),), np.int32),
        }, fill)
    return DatasetSplits(
        name=name, x_train=arrays["x_train"], y_train=arrays["y_train"], x_test=arrays["x_test"],
        y_test=arrays["y_test"], num_classes=num_classes, time_steps=time_steps, encoding="frames",
        augmentation="none",
    )
