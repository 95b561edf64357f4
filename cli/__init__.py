"""The ``tess`` command line (imported as ``tess_keras.cli``)."""
