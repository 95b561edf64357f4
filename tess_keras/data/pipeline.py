"""``tf.data`` pipelines: direct encoding over T, shuffling, batching, prefetch."""

import tensorflow as tf


def make_tf_dataset(splits, subset, batch_size, shuffle=False, seed=0):
    """A batched ``tf.data.Dataset`` of ``([batch, T, H, W, C], labels)``.

    Args:
        splits: a ``DatasetSplits``.
        subset: ``"train"`` or ``"test"``.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (seeded).
        seed: shuffle seed.
    """
    x, y = (splits.x_train, splits.y_train) if subset == "train" else (splits.x_test, splits.y_test)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    steps = splits.time_steps

    def encode(sample, label):
        sample = tf.cast(sample, tf.float32)
        if splits.encoding == "direct":
            sample = tf.repeat(sample[None], steps, axis=0)
        return sample, label

    dataset = dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
