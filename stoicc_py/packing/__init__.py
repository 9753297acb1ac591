"""The runtime packer ("inspector"): dense float32 matrices to the physical buffers of
a sparse or quantized layout, and back.

`LayoutAttr.storage(shape, f32)` is the single description of those buffers (roles,
memref shapes, element types, encoding params); this package only fills it in.
docs/formats.md describes every format bit by bit, with worked examples.

    packed = pack(w, "nm(2, 4)")          # checks that w satisfies the pattern
    packed.buffers()                      # the arrays in kernel ABI order
    assert (packed.unpack() == w).all()

Modules: `tensor` (PackedTensor, pack; save_packed, load_packed, load, packed_metadata), `artifact` (the file
format of saved packed tensors), `nm` (the N:M row encoding, shared by nm and
hybrid), `compressed` (dense, block, csr and the compressed-row schedules), `hybrid`,
`quant` (the exact numpy model of quantization: quantize, dequantize_codes; the codes'
bit packing), `calibrate` (SmoothQuant and AWQ input-channel factors), and the exact
models of the composite formats, whose bits are in stoicc_py.codec's `composed`, `sq` and
`bitsplit`: `composed` (S with Q for every sparse S; nm_quantize, nm_dequantize), `sq`
(SQ-format: sq_split, sq_quantize, fake_sq) and `bitsplit` (bit-split activations:
bitsplit, fake_bitsplit, bitsplit_linear).
"""

from stoicc_py.packing.tensor import (
    ALIGNMENT,
    PackedTensor,
    aligned_empty,
    load,
    load_packed,
    pack,
    packed_metadata,
    save_packed,
)

__all__ = [
    "ALIGNMENT",
    "PackedTensor",
    "aligned_empty",
    "load",
    "load_packed",
    "pack",
    "packed_metadata",
    "save_packed",
]
