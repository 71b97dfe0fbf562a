"""Quantisation (document §3.2): the equations, observers, fake quantisers with an Adam-learned
step Δ, model preparation, and the integer model that really stores n-bit weights.

    functional.py  §3.2.1 / §3.2.2 equations in the document's symbols (Δ, r_max, r_min, q)
    observers.py   initial Δ: min–max, percentile, MSE search, LSQ init; calibration recorder
    fake.py        WeightQuantizer (a weight transform) and ActivationQuantizer, STE + LSQ/LSQ+
    prepare.py     prepare / calibrate / train_quantized (PTQ with learned Δ, or QAT)
    fixed_point.py the multiplier M = M₀·2^(−n) and requantisation: int64 reference, exact float forms
    integer_steps.py  the integer model's steps (quantise input, layer, ReLU, pool, flatten): the reference path
    integer_stages.py the fast forward pass: the same integers in fused stages
    integer.py     convert(model) -> IntegerModel: packed weights, integer-only inference
    bitpack.py     packing n-bit codes into bytes
    mixed.py       mixed precision: per-layer sensitivity, exact knapsack over bits under a byte budget
    layerwise.py   what AdaRound and GPTQ share: layer inputs, rounding one layer at a time
    adaround.py    AdaRound (Nagel et al. 2020): learned rounding of each weight
    gptq.py        GPTQ (Frantar et al. 2022): round a column at a time, its error pushed onto the rest
"""
from .bitpack import pack_bits, unpack_bits
from .fake import ActivationQuantizer, BiasQuantizer, WeightQuantizer
from .functional import (affine_dequantize, affine_quantize, asymmetric_dequantize,
                         asymmetric_params, asymmetric_quantize, quantization_mse,
                         symmetric_delta, symmetric_dequantize, symmetric_quantize, zero_point)
from .fixed_point import quantize_multiplier, requantize
from .integer import IntegerModel, convert
from .observers import observe
from .prepare import (QuantizerOptions, calibrate, prepare, quantizer_parameters, quantizers,
                      set_quantization, train_quantized, weight_parameters)

__all__ = [
    "ActivationQuantizer", "BiasQuantizer", "IntegerModel", "QuantizerOptions", "WeightQuantizer", "affine_dequantize",
    "affine_quantize", "asymmetric_dequantize", "asymmetric_params", "asymmetric_quantize",
    "calibrate", "convert", "observe", "pack_bits", "prepare", "quantization_mse",
    "quantize_multiplier", "quantizer_parameters", "quantizers", "requantize", "set_quantization",
    "symmetric_delta", "symmetric_dequantize", "symmetric_quantize", "train_quantized",
    "unpack_bits", "weight_parameters", "zero_point",
]
