"""Per-dataset training defaults: the paper's recipes (TESS_SPEC.md §4).

A ``Recipe`` fills in every ``tess train`` option the user did not give. The
four paper datasets train VGG-9 for 200 epochs; the built-in ``digits`` set
trains the Cortex-M sized ``mcu`` network in seconds. Datasets without a
recipe of their own get ``DEFAULT_RECIPE`` with the loader's own time steps.
Shapes and class counts are facts of the data, kept in one place:
``tess_keras.data.catalog.INFO``.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Training defaults for one dataset.

    Attributes:
        model: network name (``vgg9`` or ``mcu``).
        time_steps: T; 0 means "the dataset loader's default".
        batch_size: samples per batch.
        alpha_post: TESS/S-TLLR non-causal term weight (-1, 0 or +1).
        epochs: training epochs.
        lr: Adam learning rate.
    """

    model: str = "mcu"
    time_steps: int = 0
    batch_size: int = 32
    alpha_post: float = 1.0
    epochs: int = 20
    lr: float = 1e-3


RECIPES = {
    "cifar10": Recipe("vgg9", 6, 128, 1.0, 200, 1e-3),
    "cifar100": Recipe("vgg9", 6, 128, 1.0, 200, 1e-3),
    "cifar10-dvs": Recipe("vgg9", 10, 64, 0.0, 200, 1e-3),
    # The paper uses alpha_post = +1 for DVS Gesture (the authors' code 0).
    "dvs-gesture": Recipe("vgg9", 20, 16, 1.0, 200, 1e-3),
    "digits": Recipe("mcu", 4, 32, 1.0, 20, 1e-3),
    # The 5,000-image MNIST on the mcu network: direct encoding needs few steps, the events two frames per saccade.
    "mnist": Recipe("mcu", 4, 32, 1.0, 20, 1e-3),
    "mnist-dvs": Recipe("mcu", 6, 32, 1.0, 20, 1e-3),
}

DEFAULT_RECIPE = Recipe()


def get_recipe(dataset):
    """The recipe of ``dataset`` (``DEFAULT_RECIPE`` when it has none)."""
    return RECIPES.get(dataset, DEFAULT_RECIPE)
