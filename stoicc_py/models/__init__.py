"""Models whose linear layers run on stoicc kernels: the all-MiniLM-L6-v2 sentence encoder
(`minilm`: its weights, real or synthetic; `bert`: its forward pass in numpy; `compiled`:
its linear layers as compiled kernels). docs/minilm.md shows them at work."""

from stoicc_py.models.bert import NumpyLinear, encode, layer_inputs
from stoicc_py.models.compiled import CompiledLinear, minilm_linear
from stoicc_py.models.minilm import (
    LINEAR_GLOBS,
    MINILM_L6,
    SYNTHETIC,
    MiniLMConfig,
    config_of,
    linear_names,
    minilm_model_dir,
    minilm_weights_path,
    random_tokens,
    synthetic_minilm,
    tensor_shapes,
    tokenize,
)
from stoicc_py.models.weights import load_weights, save_weights

__all__ = [
    "LINEAR_GLOBS",
    "MINILM_L6",
    "SYNTHETIC",
    "CompiledLinear",
    "MiniLMConfig",
    "NumpyLinear",
    "config_of",
    "encode",
    "layer_inputs",
    "linear_names",
    "load_weights",
    "minilm_linear",
    "minilm_model_dir",
    "minilm_weights_path",
    "random_tokens",
    "save_weights",
    "synthetic_minilm",
    "tensor_shapes",
    "tokenize",
]
