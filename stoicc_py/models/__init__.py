"""Models whose linear layers run on stoicc kernels: the all-MiniLM-L6-v2 sentence encoder
(`minilm`: its weights, real or synthetic; `bert`: its forward pass in numpy; `compiled`:
its linear layers as compiled kernels; docs/minilm.md), and LLaMA-family language models
(`llama`: a decoder layer in numpy and as .tdsl; `llama_model`: the whole model, its
perplexity and greedy generation; `gguf_llama`: GGUF files; `smollm2`: SmolLM2-135M's
file; `llama_packed`: a compressed model's file; docs/models.md), and `layerwise`:
compression layer by layer, calibrated as GPTQ does."""

from stoicc_py.models.bert import NumpyLinear, encode, layer_inputs
from stoicc_py.models.compiled import CompiledLinear, minilm_linear
from stoicc_py.models.gguf_llama import gguf_tokenizer, load_gguf
from stoicc_py.models.llama_model import CompiledLlama, LlamaWeights, NumpyLlama, generate, perplexity
from stoicc_py.models.llama_packed import PackedLlama, load_llama, save_llama
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
from stoicc_py.models.smollm2 import smollm2_gguf_path
from stoicc_py.models.weights import load_weights, save_weights

__all__ = [
    "LINEAR_GLOBS",
    "MINILM_L6",
    "SYNTHETIC",
    "CompiledLinear",
    "CompiledLlama",
    "LlamaWeights",
    "NumpyLlama",
    "PackedLlama",
    "MiniLMConfig",
    "NumpyLinear",
    "config_of",
    "encode",
    "generate",
    "gguf_tokenizer",
    "layer_inputs",
    "linear_names",
    "load_gguf",
    "load_llama",
    "load_weights",
    "minilm_linear",
    "minilm_model_dir",
    "minilm_weights_path",
    "perplexity",
    "random_tokens",
    "save_llama",
    "save_weights",
    "smollm2_gguf_path",
    "synthetic_minilm",
    "tensor_shapes",
    "tokenize",
]
