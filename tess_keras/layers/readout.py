"""The non-spiking linear readout that produces per-step logits."""

import keras


@keras.saving.register_keras_serializable(package="tess_keras")
class Readout(keras.layers.Dense):
    """Linear readout ``z[t] = W x[t] + b`` of the last block's spikes.

    A plain ``keras.layers.Dense`` without activation; its own class so that
    models and exporters can find it by type. The prediction of a spiking
    model is ``argmax(sum_t z[t])``.

    Args:
        units: number of classes.
    """

    def __init__(self, units, **kwargs):
        kwargs.pop("activation", None)
        super().__init__(units, activation=None, **kwargs)
