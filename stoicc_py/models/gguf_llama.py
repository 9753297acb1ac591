"""LLaMA-family models from GGUF files (llama.cpp's format): weights dequantized to float32
and named as examples/llama_block.tdsl's parameters, the configuration from the file's
metadata, and its byte-level BPE tokenizer rebuilt with the `tokenizers` library.

Needs the `gguf` and `tokenizers` packages (`pip install -e '.[models]'`). `write_gguf`
writes a model back (as llama.cpp's converter does), for synthetic models in tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from stoicc_py.models.llama import LlamaConfig
from stoicc_py.models.llama_model import LlamaWeights

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Array = np.ndarray[Any, Any]

GGUF_NAMES = {
    "attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
    "mlp_norm": "ffn_norm", "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down",
}  # fmt: skip
"""Our name of a layer's weight -> GGUF's (`blk.{i}.{name}.weight`)."""


def _gguf() -> Any:
    try:
        import gguf
    except ModuleNotFoundError:
        raise ModuleNotFoundError("reading GGUF files needs the gguf package: pip install -e '.[models]'") from None
    return gguf


def rope_pairs_to_halves(w: Array, heads: int) -> Array:
    """Undo llama.cpp's permutation of q/k rows. Its converter reorders each head's rows
    from Hugging Face's halves (rotate_half pairs dimension j with j + d/2) to interleaved
    pairs (2j with 2j+1), the RoPE ggml computes; our block rotates halves."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_halves_to_pairs(w: Array, heads: int) -> Array:
    """llama.cpp's permutation (convert_hf_to_gguf.py, LlamaModel.permute): the inverse of
    rope_pairs_to_halves."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_gguf(path: str | os.PathLike[str]) -> LlamaWeights:
    """The float32 weights and configuration of the LLaMA-family model in GGUF file `path`;
    ValueError for another architecture."""
    gguf = _gguf()
    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: a '{arch}' model; only the llama architecture loads")
    meta = {key.removeprefix("llama."): _field(reader, key) for key in reader.fields if key.startswith("llama.")}
    config = LlamaConfig(
        hidden=meta["embedding_length"],
        heads=meta["attention.head_count"],
        kv_heads=meta["attention.head_count_kv"],
        head_dim=meta.get("rope.dimension_count", meta["embedding_length"] // meta["attention.head_count"]),
        intermediate=meta["feed_forward_length"],
        # stored as float32: 1e-5 reads 9.99999975e-06
        rms_eps=float(f"{meta['attention.layer_norm_rms_epsilon']:.6g}"),
        rope_theta=float(meta.get("rope.freq_base", 10000.0)),
    )
    tensors = {t.name: t for t in reader.tensors}

    def weight(name: str) -> Array:
        t = tensors[name]
        return np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)

    layers = []
    for i in range(meta["block_count"]):
        w = {ours: weight(f"blk.{i}.{theirs}.weight") for ours, theirs in GGUF_NAMES.items()}
        w["wq"] = rope_pairs_to_halves(w["wq"], config.heads)
        w["wk"] = rope_pairs_to_halves(w["wk"], config.kv_heads)
        layers.append(w)
    embed = weight("token_embd.weight")
    lm_head = weight("output.weight") if "output.weight" in tensors else embed  # tied, as in SmolLM2
    return LlamaWeights(config, embed, layers, weight("output_norm.weight"), lm_head)


def _field(reader: Any, key: str) -> Any:
    return reader.fields[key].contents()


def gguf_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """The byte-level BPE tokenizer (GPT-2's, `tokenizer.ggml.model = gpt2`) of GGUF file
    `path`, from its vocabulary and merges; its control tokens (e.g. <|im_start|>) are
    special tokens."""
    try:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the tokenizer needs the tokenizers package: pip install -e '.[models]'") from None
    reader = _gguf().GGUFReader(path)
    if (kind := _field(reader, "tokenizer.ggml.model")) != "gpt2":
        raise ValueError(f"{path}: a '{kind}' tokenizer; only byte-level BPE ('gpt2') is supported")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in _field(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # llama.cpp's "smollm" pre-tokenizer (SmolLM's tokenizer.json): every digit a word of its own
    digits = [pre_tokenizers.Digits(individual_digits=True)] if _field(reader, "tokenizer.ggml.pre") == "smollm" else []
    tok.pre_tokenizer = pre_tokenizers.Sequence([*digits, byte_level])
    tok.decoder = decoders.ByteLevel()
    control = 3  # llama.cpp's token type of a control token
    types = _field(reader, "tokenizer.ggml.token_type")
    tok.add_special_tokens([AddedToken(t, special=True) for t, k in zip(tokens, types) if k == control])
    return tok


def write_gguf(path: str | os.PathLike[str], model: LlamaWeights, tokens: Sequence[str] = (),
               merges: Sequence[str] = (), quantize: str = "F32") -> None:  # fmt: skip
    """Write `model` as llama.cpp's converter does (q/k rows permuted to pairs, the lm head
    left out when tied), its projections quantized to GGML type `quantize` (e.g. Q4_1),
    with a byte-level BPE tokenizer of `tokens` and `merges` ("a b" strings)."""
    gguf = _gguf()
    c = model.config
    w = gguf.GGUFWriter(path, "llama")
    for setter, value in ((w.add_block_count, len(model.layers)), (w.add_context_length, 2048),
                          (w.add_embedding_length, c.hidden), (w.add_feed_forward_length, c.intermediate),
                          (w.add_head_count, c.heads), (w.add_head_count_kv, c.kv_heads),
                          (w.add_rope_dimension_count, c.head_dim), (w.add_rope_freq_base, c.rope_theta),
                          (w.add_layer_norm_rms_eps, c.rms_eps), (w.add_vocab_size, model.embed.shape[0])):  # fmt: skip
        setter(value)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(list(tokens))
    w.add_token_merges(list(merges))
    w.add_token_types([3 if t.startswith("<|") else 1 for t in tokens])
    qtype = gguf.GGMLQuantizationType[quantize]

    def add(name: str, a: Array, quantized: bool = True) -> None:
        if quantized and qtype != gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, gguf.quants.quantize(a, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))

    add("token_embd.weight", model.embed)
    for i, layer in enumerate(model.layers):
        permuted = {
            "wq": rope_halves_to_pairs(layer["wq"], c.heads),
            "wk": rope_halves_to_pairs(layer["wk"], c.kv_heads),
        }
        for ours, theirs in GGUF_NAMES.items():
            add(f"blk.{i}.{theirs}.weight", permuted.get(ours, layer[ours]), quantized=layer[ours].ndim == 2)
    add("output_norm.weight", model.norm, quantized=False)
    if model.lm_head is not model.embed:
        add("output.weight", model.lm_head)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
