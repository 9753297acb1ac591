"""Golden bytes of the quant formats: the hand-worked examples of docs/formats.md
("Quantized storage", Worked examples), asserted against the packer and decoded by the
numpy codec and a compiled CPU kernel (the scalar loop nest of dequantize)."""

from __future__ import annotations

import numpy as np
import pytest

import stoicc_py
from stoicc_py.codec.uniform import CodeBits
from stoicc_py.frontend.layouts import parse_layout

F32 = np.float32
GOLDEN = {
    "int4(group=4)": (
        [[7, -3.5, 2.5, 0.4, -14, 3, 5, 1], [0.5, -0.5, 1, 3.5, 0, 0, 0, 0]],
        {"values": [[0xC7, 0x02, 0x29, 0x02], [0xF1, 0x72, 0x00, 0x00]], "scales": [[1, 2], [0.5, 0]]},
        [[7, -4, 2, 0, -14, 4, 4, 0], [0.5, -0.5, 1, 3.5, 0, 0, 0, 0]],
    ),
    "int3": (  # per tensor: max|w| = 3 = qmax, so s = 1 and the codes are w
        [[3, -3, 1, 0, -1, 2, -2, 3]],
        {"values": [[0x17, 0xEB, 0x52]], "scales": [1]},
        [[3, -3, 1, 0, -1, 2, -2, 3]],
    ),
}


@pytest.mark.parametrize("layout", list(GOLDEN))
def test_golden_bytes(layout: str) -> None:
    w, buffers, values = (np.array(GOLDEN[layout][i], F32) if i != 1 else GOLDEN[layout][1] for i in range(3))
    rows, width = w.shape
    prog = stoicc_py.compile(
        f"kernel d(w: f32[{rows}, {width}] @ {layout}) -> f32[{rows}, {width}] {{ return dequantize(w) }}"
    )
    packed = prog.d.pack("w", w)
    assert packed.arrays["values"].view(np.uint8).tolist() == buffers["values"]  # type: ignore[index]
    assert packed.arrays["scales"].tolist() == buffers["scales"]  # type: ignore[index]
    code = CodeBits.of(parse_layout(layout))
    assert code.encode(code.decode(packed.arrays["values"])).tobytes() == packed.arrays["values"].tobytes()
    assert np.array_equal(packed.dequantize(), values)
    assert np.array_equal(prog.d(packed), values)
