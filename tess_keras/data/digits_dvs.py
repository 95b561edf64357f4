"""digits-dvs: scikit-learn's digits seen by a simulated event camera.

The recording follows N-MNIST (Orchard et al. 2015): the digit, upsampled to
16x16 and placed on a 24x24 sensor, is moved along three saccades forming a
triangle (0,0) -> (1.5,3) -> (3,0) -> (0,0) pixels, 100 ms each. An ideal DVS
pixel emits an event each time its log intensity has moved by its contrast
threshold since its last event: ON for an increase, OFF for a decrease; the
event time is where the linear change crossed the threshold. Per-pixel
thresholds carry a fixed mismatch and the sensor adds background-activity
noise, both drawn from ``seed``, so a seed gives one deterministic dataset.

Recordings are simulated in 3 ms steps for all digits at once (the motion is
common to every sample), then binned into T frames of 300 ms / T by tonic's
``ToFrame`` and cached like the other event datasets.
"""

import hashlib

import numpy as np

from tess_keras.data.base import DatasetSplits, resolve_data_dir
from tess_keras.data.cache import FrameCache
from tess_keras.data.digits import TRAIN_SIZE
from tess_keras.data.events import frame_size, to_frames

SENSOR = 24  # sensor side in pixels
IMAGE = 16  # digit side after upsampling
MARGIN = (SENSOR - IMAGE) // 2 - 2  # digit origin; leaves room for the 3 px saccades
SACCADE_VERTICES = ((0.0, 0.0), (1.5, 3.0), (3.0, 0.0), (0.0, 0.0))  # (x, y) pixels
SACCADE_US = 100_000
STEP_US = 3_000
DURATION_US = SACCADE_US * (len(SACCADE_VERTICES) - 1)
CONTRAST_THRESHOLD = 0.25  # log-intensity step per event
THRESHOLD_MISMATCH = 0.03  # std of the per-pixel threshold
NOISE_RATE_HZ = 0.5  # background activity per pixel
BACKGROUND = 0.2  # scene intensity where there is no ink (keeps log finite)
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])  # tonic.io.events_struct
CHUNK = 256  # digits simulated together


def _digits():
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(zoom(digits.images / 16.0, (1, IMAGE / 8, IMAGE / 8), order=1), 0.0, 1.0)
    return images.astype(np.float32), digits.target.astype(np.int32)


def _offset(t_us):
    """Saccade displacement (x, y) at time ``t_us``."""
    segment = min(int(t_us // SACCADE_US), len(SACCADE_VERTICES) - 2)
    fraction = (t_us - segment * SACCADE_US) / SACCADE_US
    (x0, y0), (x1, y1) = SACCADE_VERTICES[segment], SACCADE_VERTICES[segment + 1]
    return x0 + fraction * (x1 - x0), y0 + fraction * (y1 - y0)


def _render(canvas, offset):
    """Log intensity on the sensor with the scene shifted by a sub-pixel ``offset`` (bilinear)."""
    dx, dy = offset
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = np.float32(dx - ix), np.float32(dy - iy)
    pad = 4  # canvas border, larger than any saccade displacement

    def window(sx, sy):
        return canvas[:, pad - sy: pad - sy + SENSOR, pad - sx: pad - sx + SENSOR]

    image = ((1 - fx) * (1 - fy) * window(ix, iy) + fx * (1 - fy) * window(ix + 1, iy)
             + (1 - fx) * fy * window(ix, iy + 1) + fx * fy * window(ix + 1, iy + 1))
    return np.log(np.float32(BACKGROUND) + np.float32(1 - BACKGROUND) * image)


def simulate_events(images, seed=0, indices=None):
    """Event-camera recordings of ``images`` (``[N, 16, 16]`` in [0, 1]).

    Args:
        images: digits to record.
        seed: draws the sensor's threshold mismatch and noise.
        indices: dataset index of each image (default ``0..N-1``); the noise
            of a sample depends only on ``(seed, index)``, so a recording is
            the same whichever batch it is simulated in.

    Returns:
        a list of tonic event arrays (``x, y, t, p``; t in microseconds),
        each sorted by time.
    """
    count = len(images)
    indices = np.arange(count) if indices is None else np.asarray(indices)
    sensor_rng = np.random.default_rng([seed, 0])
    thresholds = np.clip(CONTRAST_THRESHOLD + THRESHOLD_MISMATCH * sensor_rng.standard_normal((2, SENSOR, SENSOR)),
                         0.05, None).astype(np.float32)  # [OFF, ON] per pixel
    canvas = np.zeros((count, SENSOR + 8, SENSOR + 8), np.float32)
    canvas[:, 4 + MARGIN: 4 + MARGIN + IMAGE, 4 + MARGIN: 4 + MARGIN + IMAGE] = images
    previous = _render(canvas, _offset(0))
    reference = previous.copy()  # log intensity at each pixel's last event
    parts = []
    for step in range(1, DURATION_US // STEP_US + 1):
        t_now = step * STEP_US
        current = _render(canvas, _offset(t_now))
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
            start, end = previous[sample, y, x][repeat], current[sample, y, x][repeat]
            fraction = np.clip((level - start) / np.where(end == start, 1.0, end - start), 0.0, 1.0)
            times = np.round(t_now - STEP_US + fraction * STEP_US).astype(np.int64)
            parts.append((sample[repeat], x[repeat], y[repeat], times, (sign[repeat] > 0).astype(np.int64)))
            reference[sample, y, x] += sign * n * step_threshold
        previous = current
    for i, index in enumerate(indices):
        noise_rng = np.random.default_rng([seed, 1, int(index)])
        n_noise = noise_rng.poisson(NOISE_RATE_HZ * SENSOR * SENSOR * DURATION_US / 1e6)
        parts.append((np.full(n_noise, i), noise_rng.integers(0, SENSOR, n_noise), noise_rng.integers(0, SENSOR, n_noise),
                      noise_rng.integers(0, DURATION_US, n_noise), noise_rng.integers(0, 2, n_noise)))
    sample, x, y, t, p = (np.concatenate([part[c] for part in parts]) for c in range(5))
    order = np.lexsort((t, sample))  # by sample, then time (stable)
    events = np.empty(len(order), EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x[order], y[order], t[order], p[order]
    bounds = np.searchsorted(sample[order], np.arange(count + 1))
    return [events[bounds[i]:bounds[i + 1]].copy() for i in range(count)]


def digits_dvs_events(seed=0, indices=None):
    """Recordings and labels of the digits at ``indices`` (all 1797 by default)."""
    images, labels = _digits()
    indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
    recordings = []
    for start in range(0, len(indices), CHUNK):
        chunk = indices[start:start + CHUNK]
        recordings += simulate_events(images[chunk], seed=seed, indices=chunk)
    return recordings, labels[indices]


def load_digits_dvs(data_dir=None, time_steps=6, seed=0, size=SENSOR):
    """digits-dvs as ``[N, T, H, W, 2]`` event-count frames, T bins over the 300 ms recording.

    Args:
        data_dir: datasets folder; the generated frames are cached in its
            ``.tess-cache`` folder.
        time_steps: T (default 6: two frames per saccade).
        seed: sensor mismatch, noise and the 1400/397 train/test split (as ``digits``).
        size: frame side or ``(H, W)`` (default: the 24x24 sensor).
    """
    data_dir = resolve_data_dir(data_dir)
    size = frame_size(size)
    images, labels = _digits()
    order = np.random.default_rng(seed).permutation(len(labels))
    train, test = order[:TRAIN_SIZE], order[TRAIN_SIZE:]
    # The simulator's constants are part of the key, so changing them regenerates the cache.
    simulator = (SENSOR, IMAGE, STEP_US, CONTRAST_THRESHOLD, THRESHOLD_MISMATCH, NOISE_RATE_HZ, BACKGROUND)
    cache = FrameCache(data_dir, "digits-dvs", {"T": time_steps, "size": size, "seed": seed,
                                                "sim": hashlib.sha1(repr(simulator).encode()).hexdigest()[:8]}, [])
    arrays = cache.load()
    if arrays is None:
        window = DURATION_US / time_steps
        frame_shape = (time_steps, *size, 2)

        def fill(out):
            frames = np.zeros((len(labels), *frame_shape), np.uint8)
            for start in range(0, len(labels), CHUNK):
                chunk = np.arange(start, min(start + CHUNK, len(labels)))
                for index, recording in zip(chunk, simulate_events(images[chunk], seed=seed, indices=chunk)):
                    frames[index] = to_frames(recording, (SENSOR, SENSOR, 2), size, time_steps,
                                              time_window=window, start_time=0)
            out["x_train"][:], out["y_train"][:] = frames[train], labels[train]
            out["x_test"][:], out["y_test"][:] = frames[test], labels[test]

        arrays = cache.build({
            "x_train": ((len(train), *frame_shape), np.uint8), "y_train": ((len(train),), np.int32),
            "x_test": ((len(test), *frame_shape), np.uint8), "y_test": ((len(test),), np.int32),
        }, fill)
    return DatasetSplits(
        name="digits-dvs", x_train=arrays["x_train"], y_train=arrays["y_train"], x_test=arrays["x_test"],
        y_test=arrays["y_test"], num_classes=10, time_steps=time_steps, encoding="frames", augmentation="none",
    )
