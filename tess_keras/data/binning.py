"""Events -> event-count frames, with every event in a frame.

Coordinates are scaled with tonic's ``Downsample``; the time binning is done
here because tonic's ``ToFrame(n_time_bins=T)`` makes its bins
``(t_last - t_first) // T`` long and half-open, so the last event of every
recording (and, after the integer division, sometimes more) falls past the
last bin and is lost.
"""

import numpy as np


def frame_size(size):
    """``size`` as ``(H, W)``: an int means a square."""
    if isinstance(size, int):
        return (size, size)
    return tuple(int(v) for v in size)


def time_bins(times, time_steps, time_window=None, start_time=None):
    """Bin index of each event time, ``-1`` for events outside the frames.

    Args:
        times: event times (microseconds), sorted or not.
        time_steps: T.
        time_window: bin length from ``start_time`` (fixed-length clips: events
            before ``start_time`` or from ``start_time + T * time_window`` on
            are outside); ``None`` splits ``[t_first, t_last]`` into T equal
            bins, the last one closed, so every event is in a frame.
        start_time: start of the first bin when ``time_window`` is given.
    """
    times = np.asarray(times)
    if len(times) == 0:
        return np.zeros(0, np.int64)
    if time_window is None:
        first, last = times.min(), times.max()
        span = last - first
        if span <= 0:
            return np.zeros(len(times), np.int64)
        if np.issubdtype(times.dtype, np.integer):
            bins = (times.astype(np.int64) - int(first)) * time_steps // int(span)
        else:
            bins = np.floor((times - first) * time_steps / span).astype(np.int64)
        return np.minimum(bins, time_steps - 1)
    bins = np.floor((times - start_time) / time_window).astype(np.int64)
    bins[(bins < 0) | (bins >= time_steps)] = -1
    return bins


def to_frames(events, sensor_size, size, time_steps, time_window=None, start_time=None):
    """Events -> ``uint8`` frames ``[T, H, W, P]`` (event counts per bin, clipped at 255).

    Args:
        events: tonic structured array (fields ``x``, ``t``, ``p`` and
            optionally ``y``).
        sensor_size: tonic's ``(W, H, P)`` of the recording.
        size: target ``(H, W)``; coordinates are scaled with tonic's
            ``Downsample`` (event counts of merged pixels add up).
        time_steps: T.
        time_window: bin length in microseconds starting at ``start_time``
            (fixed-length clips); ``None`` splits the whole recording into T
            equal time bins and every event lands in one (see ``time_bins``).
        start_time: start of the first bin when ``time_window`` is given.
    """
    from tonic import transforms

    height, width = size
    sensor_width, sensor_height, polarities = sensor_size
    if (width, height) != (sensor_width, sensor_height):
        events = transforms.Downsample(sensor_size=sensor_size, target_size=(width, height))(events)
    bins = time_bins(events["t"], time_steps, time_window, start_time)
    keep = bins >= 0
    x = np.asarray(events["x"], np.int64)[keep]
    y = np.asarray(events["y"], np.int64)[keep] if "y" in events.dtype.names else np.zeros(int(keep.sum()), np.int64)
    p = np.asarray(events["p"], np.int64)[keep] if polarities > 1 else np.zeros(int(keep.sum()), np.int64)
    flat = ((bins[keep] * height + y) * width + x) * polarities + p
    counts = np.bincount(flat, minlength=time_steps * height * width * polarities)
    return np.minimum(counts, 255).astype(np.uint8).reshape(time_steps, height, width, polarities)
