"""Learning rules: ``TESS`` (local), ``STLLR`` (global in space), ``BPTT``.

Select one per model: ``SpikingSequential(layers, rule="tess")`` or
``rule=TESS(alpha_post=0)``. ``get`` accepts either.
"""

from tess_keras.rules.base import LearningRule
from tess_keras.rules.bptt import BPTT
from tess_keras.rules.lsg import LSG_SOURCES, local_learning_signal, square_wave_basis
from tess_keras.rules.stllr import STLLR
from tess_keras.rules.tess import TESS

RULES = {"tess": TESS, "stllr": STLLR, "bptt": BPTT}


def get(rule, **kwargs):
    """A rule instance from a name (``tess``, ``stllr``, ``bptt``) or instance."""
    if isinstance(rule, LearningRule):
        return rule
    if isinstance(rule, dict):
        import keras

        return keras.saving.deserialize_keras_object(rule)
    key = str(rule).lower().replace("-", "")
    if key not in RULES:
        raise ValueError(f"Unknown learning rule {rule!r}; choose one of {', '.join(RULES)}.")
    return RULES[key](**kwargs)


__all__ = ["LearningRule", "TESS", "STLLR", "BPTT", "get", "square_wave_basis", "local_learning_signal", "RULES", "LSG_SOURCES"]
