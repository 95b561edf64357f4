"""digits-dvs: scikit-learn's digits seen by a simulated event camera.

The recording follows N-MNIST (Orchard et al. 2015), simulated by
``tess_keras.data.saccades``: the digit, upsampled to 16x16 and placed on a
24x24 sensor, is moved along three saccades forming a triangle, 100 ms each;
an ideal DVS pixel emits ON/OFF events at log-intensity steps of its contrast
threshold. Threshold mismatch and background noise are drawn from ``seed``,
so a seed gives one deterministic dataset. Frames are cached like the other
event datasets.
"""

import numpy as np

from tess_keras.data import saccades
from tess_keras.data.digits import TRAIN_SIZE
from tess_keras.data.events import frame_size
from tess_keras.data.saccades import DURATION_US, EVENT_DTYPE, SACCADE_US, SACCADE_VERTICES  # noqa: F401

SENSOR = 24  # sensor side in pixels
IMAGE = 16  # digit side after upsampling
CAMERA = saccades.Camera(sensor=SENSOR, image=IMAGE)
MARGIN = CAMERA.margin
CHUNK = 256  # digits simulated together


def _digits():
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(zoom(digits.images / 16.0, (1, IMAGE / 8, IMAGE / 8), order=1), 0.0, 1.0)
    return images.astype(np.float32), digits.target.astype(np.int32)


def simulate_events(images, seed=0, indices=None):
    """Event-camera recordings of ``images`` (``[N, 16, 16]`` in [0, 1]) on the 24x24 sensor.

    Args:
        images: digits to record.
        seed: draws the sensor's threshold mismatch and noise.
        indices: dataset index of each image (default ``0..N-1``); a
            recording is the same whichever batch it is simulated in.

    Returns:
        a list of tonic event arrays (``x, y, t, p``; t in microseconds), each sorted by time.
    """
    return saccades.simulate_events(images, CAMERA, seed=seed, indices=indices)


def digits_dvs_events(seed=0, indices=None):
    """Recordings and labels of the digits at ``indices`` (all 1797 by default)."""
    images, labels = _digits()
    indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
    return saccades.record(images, CAMERA, seed=seed, indices=indices, chunk=CHUNK), labels[indices]


def load_digits_dvs(data_dir=None, time_steps=6, seed=0, size=SENSOR):
    """digits-dvs as ``[N, T, H, W, 2]`` event-count frames, T bins over the 300 ms recording.

    Args:
        data_dir: datasets folder; the generated frames are cached in its
            ``.tess-cache`` folder.
        time_steps: T (default 6: two frames per saccade).
        seed: sensor mismatch, noise and the 1400/397 train/test split (as ``digits``).
        size: frame side or ``(H, W)`` (default: the 24x24 sensor).
    """
    def scenes():
        images, labels = _digits()
        order = np.random.default_rng(seed).permutation(len(labels))
        return images, labels, order[:TRAIN_SIZE], order[TRAIN_SIZE:]

    return saccades.load_saccade_frames("digits-dvs", scenes, CAMERA, data_dir, time_steps, seed, frame_size(size),
                                        chunk=CHUNK)
