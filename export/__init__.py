"""``tess export``: int8 TFLite-Micro model and generated C++ TESS engine
(imported as ``tess_keras.export``)."""
