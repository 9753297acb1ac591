"""Golden bytes of the quant-family formats: the hand-worked examples of docs/formats.md
("Worked examples" of Quantized storage, Sparse with quantization, SQ-format, Bit-split
activations), asserted against the packer and decoded by the numpy codec, by compiled
CPU kernels (the scalar loop nests, and the vector paths: tdsl-vectorize-quant,
-integer, -sparse) and by the accelerator's functional simulator.

The kernels run on the golden matrix tiled (the small examples 4 x 16 copies: K = 128,
whole vector steps), whose dequantized value is the golden one tiled, so every lane decodes
a golden byte. The small examples' groups of 4 codes or 2 stored values are below every
vectoriser's step and the accelerator's k-tile: the K = 64 examples (one formula each in
docs/formats.md, every byte shown there) are the same formats at group sizes they take."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import assert_close

import stoicc_py
from stoicc_py import lowering
from stoicc_py.codec import codec_for
from stoicc_py.codec.uniform import CodeBits, Sign
from stoicc_py.diagnostics import CompileError
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.packing.bitsplit import bitsplit_linear

F32 = np.float32
TILE = (4, 16)
INT8_ACTS = "int8(per=token)"


@dataclass(frozen=True)
class Golden:
    """A format's worked example: `w` packs to `buffers` (1-byte integer buffers as their
    uint8 bytes, others as numbers) and dequantizes to `values`; `codes` names the code
    fields of each code buffer, for the numpy codec's round trip."""

    layout: str
    w: list[list[float]]
    buffers: dict[str, list[Any]]
    values: list[list[float]]
    codes: dict[str, CodeBits] = field(default_factory=dict)
    vector: tuple[str, ...] = ()
    """The kernels (`f`: f32 x, `i`: int8 per-token x) that a vectoriser takes."""
    tile: tuple[int, int] = TILE
    """The copies of `w` (rows, columns) that the kernels run on."""


def _of(layout: str) -> CodeBits:
    return CodeBits.of(parse_layout(layout))


SHARED_W = [[1.5, -0.25, -2, 0.25, 0, 3, -0.5, 0.5]]  # the 2-bit and 1-bit table of docs/formats.md
S = F32(5) / F32(3)  # int2(symmetric=false)'s scale: (3 - (-2)) / 3 in float32
BITSPLIT_X = [[127, -3, 0, 5, -8, 20, 2, -1], [-127, -3, 0, 5, -8, 1, 2, -1]]
BITSPLIT_CODES = {"lo": CodeBits(4, Sign.UNSIGNED), "hi": CodeBits(4, Sign.TWOS), "bitmap": CodeBits(1, Sign.UNSIGNED)}
SCALES_64 = [[1, 0.5], [2, 0.25]]
"""The scale groups of the K = 64 examples: powers of two, so `w = s * q` quantizes back to `q`."""
NM_PAIRS = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
NONZERO_INT4 = [c for c in range(-7, 8) if c]


def _int4_group32() -> list[list[float]]:
    """docs/formats.md: `w[r, k] = s[r, k // 32] * q`, `q = (k + 3r) mod 15 - 7`."""
    return [[SCALES_64[r][k // 32] * ((k + 3 * r) % 15 - 7) for k in range(64)] for r in range(2)]


def _nm_int4_group16() -> list[list[float]]:
    """docs/formats.md: group j of row r keeps the positions `NM_PAIRS[(j + r) mod 6]`; its
    slots t = 2j, 2j + 1 hold `s[r, t // 16] * NONZERO_INT4[(t + 5r) mod 14]`."""
    w = [[0.0] * 64 for _ in range(2)]
    for r, j in np.ndindex(2, 16):
        for i, pos in enumerate(NM_PAIRS[(j + r) % 6]):
            t = 2 * j + i
            w[r][4 * j + pos] = SCALES_64[r][t // 16] * NONZERO_INT4[(t + 5 * r) % 14]
    return w


def _hex(*rows: str) -> list[list[int]]:
    """Byte rows as docs/formats.md shows them: hex, in groups of 4 bytes."""
    return [list(bytes.fromhex(row)) for row in rows]


HEX_IN_DOCS = {
    "int4(group=32) values": _hex(
        "a9cbed0f 21436597 badcfe10 325476a9 cbed0f21 436597ba dcfe1032 5476a9cb",
        "dcfe1032 5476a9cb ed0f2143 6597badc fe103254 76a9cbed 0f214365 97badcfe",
    ),
    "nm values": _hex("a9cbed1f 325476a9 cbed1f32 5476a9cb", "fe214365 97badcfe 21436597 badcfe21"),
    "nm indices": _hex("849ced84 9ced849c", "c8d94ec8 d94ec8d9"),
}
"""The K = 64 examples' byte rows, which docs/formats.md shows as they are written here."""
GOLDEN = {
    g.layout: g
    for g in [
        Golden(
            "int4(group=4)",
            [[7, -3.5, 2.5, 0.4, -14, 3, 5, 1], [0.5, -0.5, 1, 3.5, 0, 0, 0, 0]],
            {"values": [[0xC7, 0x02, 0x29, 0x02], [0xF1, 0x72, 0x00, 0x00]], "scales": [[1, 2], [0.5, 0]]},
            [[7, -4, 2, 0, -14, 4, 4, 0], [0.5, -0.5, 1, 3.5, 0, 0, 0, 0]],
            # groups of 4 codes: less than a vector step, so both products are the scalar loop nests
        ),
        Golden(  # per tensor: max|w| = 3 = qmax, so s = 1 and the codes are w
            "int3",
            [[3, -3, 1, 0, -1, 2, -2, 3]],
            {"values": [[0x17, 0xEB, 0x52]], "scales": [1]},
            [[3, -3, 1, 0, -1, 2, -2, 3]],
            vector=("f", "i"),
        ),
        Golden(
            "int6",
            [[31, -31, 5, -1, 0, 16, -20, 7]],
            {"values": [[0x1F, 0xF5, 0x00, 0x7C, 0xC9, 0x24]], "scales": [1]},
            [[31, -31, 5, -1, 0, 16, -20, 7]],
            vector=("f", "i"),
        ),
        Golden(
            "int5(symmetric=false)",
            [[-1, 0, 30, 2.5, 7, -0.5, 15, 3]],
            {"values": [[0x10, 0x3F, 0x18, 0x40, 0x44]], "scales": [1], "zero_points": [1]},
            [[-1, 0, 30, 2, 7, 0, 15, 3]],
            vector=("f", "i"),
        ),
        Golden(
            "int2(symmetric=false)",
            SHARED_W,
            {"values": [[0x46, 0x5D]], "scales": [S], "zero_points": [1]},
            [[S, 0, -S, 0, 0, 2 * S, 0, 0]],
            vector=("f", "i"),
        ),
        Golden(
            "binary",
            SHARED_W,
            {"values": [[0xB9]], "scales": [1]},
            [[1, -1, -1, 1, 1, 1, -1, 1]],
            vector=("f",),
        ),
        Golden(
            "nm(2, 4) with int4(group=2)",
            [[0, 7, 0, -2.5, 3.5, 0, 0, 0], [0, 0, 0, 0, 14, -5, 0, 0]],
            {"values": [[0xE7, 0x07], [0x00, 0xE7]], "scales": [[1, 0.5], [0, 2]], "indices": [[0x4D], [0x44]]},
            [[0, 7, 0, -2, 3.5, 0, 0, 0], [0, 0, 0, 0, 14, -4, 0, 0]],
            {"values": _of("int4")},  # scale groups of 2 stored values: no vector path takes them
        ),
        Golden(  # int4(group=G) in whole vector steps and accelerator k-tiles
            "int4(group=32)",
            _int4_group32(),
            {"values": HEX_IN_DOCS["int4(group=32) values"], "scales": SCALES_64},
            _int4_group32(),
            vector=("f", "i"),
            tile=(2, 2),
        ),
        Golden(  # the integer product of nm with Q has no vectoriser: only f takes one
            "nm(2, 4) with int4(group=16)",
            _nm_int4_group16(),
            {"values": HEX_IN_DOCS["nm values"], "scales": SCALES_64,
             "indices": [np.frombuffer(bytes(row), np.int32).tolist() for row in HEX_IN_DOCS["nm indices"]]},
            _nm_int4_group16(),
            {"values": _of("int4")},
            vector=("f",),
            tile=(2, 2),
        ),  # fmt: skip
        Golden(
            "sq(low=int4(axis=0), high=int8, group=4, count=1)",
            [[0.5, -127, 1, -1.5, 3.5, 0.25, -3.5, 2], [3.5, -7, 7, 100, 0, 0, 0, 0]],
            {"low.values": [[0x01, 0xD2, 0x00, 0x49], [0x94, 0x07, 0x00, 0x00]], "low.scales": [0.5, 1],
             "high.values": [[0x81, 0x04], [0x64, 0x00]], "high.index": [[1, 0], [3, 0]], "high.scales": [1]},
            [[0.5, -127, 1, -1.5, 4, 0, -3.5, 2], [4, -7, 7, 100, 0, 0, 0, 0]],
            {"low.values": _of("int4"), "high.values": _of("int8")},
        ),  # fmt: skip
        Golden(  # activations: the kernel splits x at run time; `values` is fake_quantize(x)
            "bitsplit(int8, low_bits=4, offset=true)",
            BITSPLIT_X,
            {"lo": [[0xDF, 0x50, 0x48, 0xF2], [0x59, 0xD8, 0x90, 0x7A]],
             "hi": [[0xF7, 0x1F, 0x0F, 0x00], [0x08, 0x00, 0x00, 0x00]], "bitmap": [[0xB3], [0x01]],
             "counts": [5, 1], "scales": [1, 1], "offsets": [0, 8]},
            BITSPLIT_X,
            BITSPLIT_CODES,
            vector=("i",),  # as int8 per token (tdsl-bitsplit-as-int8): the same integer products
        ),  # fmt: skip
        Golden(  # row 0 has o = 0 either way; the accelerator splits without the offset
            "bitsplit(int8, low_bits=4, offset=false)",
            BITSPLIT_X,
            {"lo": [[0xDF, 0x50, 0x48, 0xF2], [0xD1, 0x50, 0x18, 0xF2]],
             "hi": [[0xF7, 0x1F, 0x0F, 0x00], [0xF8, 0xFF, 0x00, 0x00]], "bitmap": [[0xB3], [0x93]],
             "counts": [5, 4], "scales": [1, 1]},
            BITSPLIT_X,
            BITSPLIT_CODES,
            vector=("i",),
        ),  # fmt: skip
    ]
}
BITSPLIT = "bitsplit(int8, low_bits=4, offset=true)"


def _activations(layout: str) -> bool:
    """A bit-split layout: the golden matrix is x, quantized and split at run time."""
    return layout.startswith("bitsplit")




def _matrix(rows: list[list[float]]) -> np.ndarray[Any, Any]:
    return np.array(rows, F32)


def _bytes(a: np.ndarray[Any, Any]) -> list[Any]:
    return a.view(np.uint8).tolist() if a.dtype.itemsize == 1 and a.dtype.kind in "iu" else a.tolist()


def _prune(layout: str) -> dict[str, str]:
    return {"prune": "magnitude"} if layout.startswith("nm") else {}


@pytest.mark.parametrize("layout", list(GOLDEN))
def test_golden_bytes(layout: str) -> None:
    """The packer writes exactly the worked example's bytes; the numpy codec decodes them
    (and re-encodes the same bytes); dequantize() gives the worked example's values."""
    g = GOLDEN[layout]
    packed = stoicc_py.pack(_matrix(g.w), layout)
    assert {role: _bytes(a) for role, a in packed.arrays.items()} == g.buffers
    attr = parse_layout(layout)
    codes = g.codes or {"values": CodeBits.of(attr)}  # type: ignore[arg-type]
    for role, code in codes.items():
        data = packed.arrays[role]
        assert code.encode(code.decode(data)).view(np.uint8).tobytes() == data.view(np.uint8).tobytes()
    if not g.codes:  # a uniform layout: its registered codec
        codec = codec_for(attr, _matrix(g.w).shape)
        assert np.array_equal(codec.decode(packed.arrays), _matrix(g.values))
        assert {role: _bytes(a) for role, a in codec.encode(_matrix(g.w)).items()} == g.buffers
    assert np.array_equal(packed.dequantize(), _matrix(g.values))


DOCS = (Path(__file__).parents[1] / "docs" / "formats.md").read_text()


@pytest.mark.parametrize("name", list(HEX_IN_DOCS))
def test_docs_show_the_bytes(name: str) -> None:
    """docs/formats.md shows every byte of the K = 64 examples, as the packer writes them."""
    for row in HEX_IN_DOCS[name]:
        h = bytes(row).hex()
        assert " ".join(h[i : i + 8] for i in range(0, len(h), 8)) in DOCS, name


VECTOR_OP = {"f": ("vector.fma",), "i": ("%row_offsets", "pmadd.wd")}
"""What only a vectoriser's kernel holds: f32 lanes of products (tdsl-vectorize-quant,
-sparse), the per-row offset sums of the integer dot products (tdsl-vectorize-integer),
or its i16 pairs' pmaddwd where int8 codes step signed, without offsets (AVX2)."""
SCALAR = re.compile(r"tdsl-(vectorize-[a-z]+|microkernel)(\{[^}]*\})?,")


def _source(layout: str, rows: int, width: int, kernels: str = "dfi") -> str:
    if _activations(layout):  # x is the golden matrix
        return (f"kernel i(x: f32[M, {width}], w: f32[24, {width}] @ int8(axis=0)) -> f32[M, 24] "
                f"{{ return linear(quantize(x, {layout}), w) }}")  # fmt: skip
    w = f"w: f32[{rows}, {width}] @ {layout}"
    source = {"d": f"kernel d({w}) -> f32[{rows}, {width}] {{ return dequantize(w) }}",
              "f": f"kernel f(x: f32[M, {width}], {w}) -> f32[M, {rows}] {{ return linear(x, w) }}",
              "i": f"kernel i(x: f32[M, {width}], {w}) -> f32[M, {rows}] "
                   f"{{ return linear(quantize(x, {INT8_ACTS}), w) }}"}  # fmt: skip
    return "\n".join(source[k] for k in kernels)


def _tiled(layout: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    g = GOLDEN[layout]
    return np.tile(_matrix(g.w), g.tile), np.tile(_matrix(g.values), g.tile)


def _run_cpu(layout: str, vectorised: bool) -> np.ndarray[Any, Any]:
    """The integer product's result, after checking every kernel against the golden values."""
    w, values = _tiled(layout)
    kernels = "fi" if " with " in layout else "dfi"  # dequantize() takes a plain quantized tensor
    prog = stoicc_py.compile(_source(layout, *w.shape, kernels), cache=False)  # the cache key does not know the pipeline
    for name in "i" if _activations(layout) else "fi":
        took = any(op in getattr(prog, name).ir("loops") for op in VECTOR_OP[name])
        assert took == (vectorised and name in GOLDEN[layout].vector), f"{name}: vector path {took}"
    rng = np.random.default_rng(1)
    if _activations(layout):
        weight = prog.i.pack("w", rng.standard_normal((24, w.shape[1])).astype(F32))
        got = prog.i(w, weight)
        assert np.array_equal(got, bitsplit_linear(stoicc_py.pack(w, layout), weight))
        assert_close(got, prog.i.reference(w, weight))
        return got
    packed = prog.f.pack("w", w, **_prune(layout))
    assert np.array_equal(packed.dequantize(), values)  # the golden bytes, tiled, decode to the golden values
    if "d" in kernels:
        assert np.array_equal(prog.d(packed), values)
    x = rng.standard_normal((5, w.shape[1])).astype(F32)
    assert_close(prog.f(x, packed), (x.astype(np.float64) @ values.T.astype(np.float64)).astype(F32))
    got = prog.i(x, packed)
    assert_close(got, prog.i.reference(x, packed))
    return got


@pytest.mark.parametrize("layout", list(GOLDEN))
def test_golden_cpu_kernels(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default pipeline (the vector paths that take the format) and the pipeline
    without tdsl-microkernel and tdsl-vectorize-*, whose products are the scalar loop
    nests, decode the golden bytes; the integer product is the same bits on both."""
    vector = _run_cpu(layout, vectorised=True)
    spec = lowering.pipeline_spec
    monkeypatch.setattr(lowering, "pipeline_spec", lambda *a: SCALAR.sub("", spec(*a)))
    assert np.array_equal(_run_cpu(layout, vectorised=False), vector)


ACCEL_REFUSES = {
    "int4(group=4)": "k-tiles of 4 do not start on whole index words or bytes",
    "nm(2, 4) with int4(group=2)": "k-tiles of 4 do not start on whole index words or bytes",
    BITSPLIT: "without the offset transform",
}
"""Golden formats the accelerator refuses, by the start of its message (groups of 4
codes or 2 stored values are below its smallest k-tile; int4(group=32), nm(2, 4) with
int4(group=16) and bitsplit(offset=false) are the same formats in a form it runs)."""


def _simulate(layout: str) -> None:
    w, _ = _tiled(layout)
    prog = stoicc_py.compile(_source(layout, *w.shape, kernels="i"), target="accel")
    rng = np.random.default_rng(2)
    if _activations(layout):
        x, weight = w, prog.i.pack("w", rng.standard_normal((24, w.shape[1])).astype(F32))
    else:
        x, weight = rng.standard_normal((5, w.shape[1])).astype(F32), prog.i.pack("w", w, **_prune(layout))
    assert_close(prog.i(x, weight), prog.i.reference(x, weight))  # accel programs compile per call


@pytest.mark.parametrize("layout", list(GOLDEN))
def test_golden_simulator(layout: str) -> None:
    """The accelerator (functional simulator) on the integer product of the golden bytes,
    or its refusal in the user's terms."""
    if layout in ACCEL_REFUSES:
        with pytest.raises(CompileError, match=ACCEL_REFUSES[layout]):
            _simulate(layout)
        return
    _simulate(layout)
