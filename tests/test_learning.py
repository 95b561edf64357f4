"""Learning on the built-in digits (CPU, seeded): the rules actually learn.

Issue 2: TESS reaches >= 95 % test accuracy within 20 epochs (mean of 3 seeds) and beats the
same network with its hidden layers frozen (readout trained alone) by >= 2
points; BPTT and S-TLLR also reach >= 95 %.

Protocol of issue 11 (as ``tess train``): the validation split, carved out of
the training data, drives ReduceLROnPlateau and the per-epoch curve; the test
split is evaluated once, on the last epoch's model. Run with ``-s`` to see the
figures the README quotes.
"""

import keras
import pytest

from tess_keras import data, models

pytestmark = pytest.mark.slow

EPOCHS = 20


SEEDS = (0, 1, 2)


def fit_digits(rule, freeze_hidden=False, seed=0):
    """Test accuracy (one evaluation, at the end) and per-epoch validation accuracies of a seeded run."""
    keras.utils.set_random_seed(seed)
    splits = data.load_dataset("digits", time_steps=4)
    assert len(splits.y_val) > 0
    train = data.make_tf_dataset(splits, "train", 32, shuffle=True, seed=seed)
    validation = data.make_tf_dataset(splits, "validation", 128)
    test = data.make_tf_dataset(splits, "test", 128)
    model = models.mcu_net(splits.input_shape, splits.num_classes, rule=rule)
    if freeze_hidden:
        for layer in model.spiking_layers:
            layer.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(
        train,
        validation_data=validation,
        epochs=EPOCHS,
        shuffle=False,  # the tf.data pipeline shuffles; Keras ignores shuffle= for datasets
        verbose=0,
        callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5)],
    )
    curve = history.history["val_accuracy"]
    test_accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
    print(f"\ndigits {rule}{' frozen hidden' if freeze_hidden else ''} seed {seed}: {len(splits.y_train)} train / "
          f"{len(splits.y_val)} validation / {len(splits.y_test)} test, validation {curve[-1]:.4f}, "
          f"test {test_accuracy:.4f}")
    return test_accuracy, curve


@pytest.fixture(scope="module")
def tess_results():
    """One run per seed: under the validation protocol one seed's test figure
    moves by about 1.5 points between seeds (94.5 / 96.7 / 96.5 % on
    2026-12-01), so the 95 % goal is checked on the mean of three seeds and
    every seed must still clear 93 %."""
    return [fit_digits("tess", seed=seed) for seed in SEEDS]


def test_tess_learns_digits(tess_results):
    finals = [final for final, _ in tess_results]
    assert sum(finals) / len(finals) >= 0.95, finals
    assert min(finals) >= 0.93, finals
    for _, curve in tess_results:
        assert max(curve) >= 0.95, curve


def test_tess_beats_frozen_hidden_layers(tess_results):
    final, _ = tess_results[0]
    frozen_final, frozen_curve = fit_digits("tess", freeze_hidden=True)
    assert final >= frozen_final + 0.02, (final, frozen_curve)


@pytest.mark.parametrize("rule", ["bptt", "stllr"])
def test_global_rules_learn_digits(rule):
    final, curve = fit_digits(rule)
    assert final >= 0.95, curve
