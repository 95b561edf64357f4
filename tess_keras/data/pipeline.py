"""``tf.data`` pipelines: batching, the recipes' augmentation, encoding over T, prefetch.

Samples are gathered a batch at a time from the ``DatasetSplits`` arrays
(which may be memory-mapped from the frame cache, so a dataset larger than
RAM still trains), then augmented and encoded on parallel ``map`` calls, and
prefetched. TensorFlow is imported when a pipeline is built, not when this
module is imported.
"""

import numpy as np

CROP_PADDING = 4  # the recipes' "crop pad 4"


def make_tf_dataset(splits, subset, batch_size, shuffle=False, seed=0, augment=False):
    """A batched ``tf.data.Dataset`` of ``([batch, T, H, W, C] float32, labels)``.

    Args:
        splits: a ``DatasetSplits``.
        subset: ``"train"``, ``"validation"`` or ``"test"`` (``ValueError`` otherwise).
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (seeded).
        seed: shuffle and augmentation seed.
        augment: apply ``splits.augmentation`` (only meaningful for the
            training subset): ``"crop"`` pads by 4 and crops back at a random
            offset, the same for every frame of a sample (CIFAR10-DVS, DVS
            Gesture); ``"cifar"`` adds a random horizontal flip and a cutout
            square (CIFAR). Normalisation applies with or without ``augment``.
    """
    import tensorflow as tf

    x, y = splits.subset(subset)
    count = len(y)
    frames = splits.encoding == "frames"
    steps = splits.time_steps
    sample_shape = tuple(x.shape[1:])
    augmentation = splits.augmentation if augment else "none"

    def gather(indices):
        indices = np.sort(indices)  # sequential reads from a memory-mapped cache
        return np.asarray(x[indices]), np.asarray(y[indices])

    def load(indices, batch_seed):
        images, labels = tf.numpy_function(gather, [indices], [tf.as_dtype(x.dtype), tf.as_dtype(y.dtype)])
        images = tf.ensure_shape(images, (None, *sample_shape))
        labels = tf.ensure_shape(labels, (None,))
        return images, labels, batch_seed

    def encode(images, labels, batch_seed):
        images = tf.cast(images, tf.float32)
        if not frames and x.dtype == np.uint8:
            images = images / 255.0
        if splits.normalization is not None:
            mean, std = (tf.constant(v, tf.float32) for v in splits.normalization)
            images = (images - mean) / std
        seeds = tf.random.experimental.stateless_split(tf.stack([batch_seed, tf.constant(seed, tf.int64)]), 3)
        if augmentation in ("crop", "cifar"):
            images = random_crop(images, CROP_PADDING, seeds[0], spatial_axis=2 if frames else 1)
        if augmentation == "cifar":
            images = random_flip(images, seeds[1])
            images = cutout(images, splits.cutout, seeds[2])
        if not frames:
            images = tf.repeat(images[:, None], steps, axis=1)
        return images, labels

    indices = tf.data.Dataset.range(count)
    if shuffle and count:
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip(indices.batch(batch_size), batch_seeds)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def random_crop(images, padding, seed, spatial_axis=1):
    """Zero-pad H and W by ``padding`` and crop back at a random offset per sample.

    Args:
        images: ``[B, H, W, C]`` (``spatial_axis=1``) or ``[B, T, H, W, C]``
            (``spatial_axis=2``; every frame of a sample gets the same crop).
        padding: pixels added on each side.
        seed: stateless seed ``[2]``.
    """
    import tensorflow as tf

    rank = len(images.shape)
    height, width = images.shape[spatial_axis], images.shape[spatial_axis + 1]
    pads = [[0, 0]] * rank
    pads[spatial_axis] = pads[spatial_axis + 1] = [padding, padding]
    padded = tf.pad(images, pads)
    batch = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform((2, batch), seed, 0, 2 * padding + 1, tf.int32)
    rows = offsets[0][:, None] + tf.range(height)[None]
    cols = offsets[1][:, None] + tf.range(width)[None]
    cropped = tf.gather(padded, rows, axis=spatial_axis, batch_dims=1)
    return tf.gather(cropped, cols, axis=spatial_axis + 1, batch_dims=1)


def random_flip(images, seed):
    """Mirror each ``[B, H, W, C]`` image left-right with probability 1/2."""
    import tensorflow as tf

    flip = tf.random.stateless_uniform((tf.shape(images)[0], 1, 1, 1), seed) < 0.5
    return tf.where(flip, tf.reverse(images, axis=[2]), images)


def cutout(images, size, seed):
    """Zero a ``size``x``size`` square (clipped at the border) at a random centre of each image."""
    import tensorflow as tf

    if size <= 0:
        return images
    height, width = images.shape[1], images.shape[2]
    batch = tf.shape(images)[0]
    where = tf.random.stateless_uniform((2, batch), seed)
    centre_y = tf.cast(where[0] * height, tf.int32)[:, None, None]
    centre_x = tf.cast(where[1] * width, tf.int32)[:, None, None]
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = (tf.abs(rows - centre_y) * 2 < size) & (tf.abs(cols - centre_x) * 2 < size)
    return images * tf.cast(~inside, images.dtype)[..., None]
