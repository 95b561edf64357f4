"""tess-keras: spiking neural networks trained with TESS, deployed to Cortex-M.

The package is layered so data flows one way:

    neurons -> layers -> rules -> models -> data  (library)
    cli  (tess_keras.cli, lives in ../cli)
    export (tess_keras.export, lives in ../export) -> firmware/

Importing ``tess_keras`` itself is cheap: TensorFlow and Keras are only
imported when a sub-module that needs them is used, so ``tess --help`` stays
fast.
"""

import importlib
import os

# TensorFlow is the supported Keras backend (the rules use tf.GradientTape and
# tf.while_loop); set it before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ log: errors only, unless TESS_VERBOSE=1 (``tess --verbose``);
# see tess_keras.logs. A level the user set is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if os.environ.get("TESS_VERBOSE", "") not in ("", "0") else "2")

__version__ = "0.1.0"

_LAZY = {
    "layers": "tess_keras.layers",
    "rules": "tess_keras.rules",
    "models": "tess_keras.models",
    "data": "tess_keras.data",
    "neurons": "tess_keras.neurons",
}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    raise AttributeError(f"module 'tess_keras' has no attribute {name!r}")
