"""Keras 3 spiking layers: per-time-step synapses + soft-reset LIF neurons."""

from tess_keras.layers.base import SpikingLayer
from tess_keras.layers.readout import Readout
from tess_keras.layers.spiking_conv2d import SpikingConv2D
from tess_keras.layers.spiking_dense import SpikingDense
from tess_keras.layers.weight_standardization import standardize_kernel

__all__ = ["SpikingLayer", "SpikingConv2D", "SpikingDense", "Readout", "standardize_kernel"]
