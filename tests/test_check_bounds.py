"""--check-bounds: generated code that would leave a buffer raises instead of reading or
writing outside it; checked kernels compute the same results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, rand

import stoicc_py
from stoicc_py.cli import main
from stoicc_py.packing import PackedTensor

LAYOUTS = {  # kernel name -> layout of its weight w: f32[32, 64]
    "sp": "csr(index=i16)", "h": "hybrid(tile=[16, 32], formats=[dense, nm(2, 4)])", "nm": "nm(2, 4)",
    "nmq": "nm(2, 4) with int4(group=16)",
}  # fmt: skip
SOURCE = "\n".join(f"kernel {n}(x: f32[M, 64], w: f32[32, 64] @ {layout}) -> f32[M, 32] {{ return linear(x, w) }}"
                   for n, layout in LAYOUTS.items())  # fmt: skip


def _unchecked(packed: PackedTensor, **changes: np.ndarray) -> PackedTensor:
    """A copy of `packed` with some buffers replaced, as a caller could build by hand."""
    return PackedTensor(packed.layout, packed.shape, {**{r: a.copy() for r, a in packed.arrays.items()}, **changes})


@pytest.fixture
def no_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the validation of packed arguments, so that corrupt metadata reaches the generated code."""
    monkeypatch.setattr(PackedTensor, "check", lambda self: None)


@pytest.fixture(scope="module")
def checked() -> stoicc_py.Program:
    return stoicc_py.compile(SOURCE, check_bounds=True)


def test_checked_kernel_agrees_with_reference(checked: stoicc_py.Program) -> None:
    rng = np.random.default_rng(0)
    x, w = rand(rng, 5, 64), rand(rng, 32, 64)
    w[rng.random(w.shape) < 0.7] = 0
    packed = checked.sp.pack("w", w)
    assert_close(checked.sp(x, packed), checked.sp.reference(x, packed))
    assert checked.sp.abi.check_bounds and checked.sp.abi.extents() == [(2, 0), (3, 0)]


def test_a_column_index_out_of_range_is_caught(checked: stoicc_py.Program, no_validation: None) -> None:
    rng = np.random.default_rng(1)
    packed = checked.sp.pack("w", np.eye(32, 64, dtype=np.float32))
    cols = packed.arrays["cols"].copy()
    cols[3] = 5000  # x has 64 columns
    with pytest.raises(IndexError, match=r"sp: the compiled code read outside buffer 'x' \(shape \[5, 64\]\)"):
        checked.sp(rand(rng, 5, 64), _unchecked(packed, cols=cols))


def test_a_row_pointer_past_the_values_is_caught(checked: stoicc_py.Program, no_validation: None) -> None:
    packed = checked.sp.pack("w", np.eye(32, 64, dtype=np.float32))
    rowptr = packed.arrays["rowptr"].copy()
    rowptr[-1] += 100  # the last row now runs past the stored entries
    with pytest.raises(IndexError, match="read outside buffer 'w_(cols|values)'"):
        checked.sp(np.ones((2, 64), np.float32), _unchecked(packed, rowptr=rowptr))


@pytest.mark.parametrize(("role", "value", "buffer"), [("tile1.cols", 5, "x"), ("tile1.rowptr", 9, "w_tile1_values")])
def test_a_corrupt_hybrid_schedule_is_caught(
    checked: stoicc_py.Program, role: str, value: int, buffer: str, no_validation: None
) -> None:
    """The hybrid kernel's tile schedule: a tile column past x, a row of tiles past the stored tiles."""
    w = np.zeros((32, 64), np.float32)
    w[:, ::4] = 1  # every tile 2:4
    packed = checked.h.pack("w", w)
    bad = packed.arrays[role].copy()
    bad[-1] = value
    with pytest.raises(IndexError, match=f"h: the compiled code read outside buffer '{buffer}'"):
        checked.h(np.ones((8, 64), np.float32), _unchecked(packed, **{role: bad}))


def test_validation_refuses_the_same_tensors_without_checks() -> None:
    prog = stoicc_py.compile(
        f"kernel sp(x: f32[M, 64], w: f32[32, 64] @ {LAYOUTS['sp']}) -> f32[M, 32] {{ return linear(x, w) }}"
    )
    packed = prog.sp.pack("w", np.eye(32, 64, dtype=np.float32))
    rowptr = packed.arrays["rowptr"].copy()
    rowptr[-1] += 100
    with pytest.raises(ValueError, match="corrupt packed tensor"):
        prog.sp(np.ones((2, 64), np.float32), _unchecked(packed, rowptr=rowptr))


def test_cli_check_bounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sp.tdsl"
    path.write_text(SOURCE.splitlines()[0])
    assert main(["compile", str(path), "--emit", "header", "--check-bounds"]) == 0
    header = capsys.readouterr().out
    args = " ".join(header.split())
    assert (
        "int64_t, /* M */ int64_t, /* w_cols_len0 */ int64_t, /* w_values_len0 */ int64_t *); /* bounds_status */"
        in args
    )
    assert main(["run", str(path), "--check-bounds", "--repeat", "1"]) == 0
    assert "ok" in capsys.readouterr().out


# --- corrupt packed tensors: validation refuses them, or the checked kernel reads them in bounds


def _corruptions(a: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Bad values at the start, middle and end of a buffer; a buffer cut short, too long, reversed, random."""
    flat, out = a.reshape(-1), {}
    integer = a.dtype.kind in "iu"
    values = (
        [np.iinfo(a.dtype).max, np.iinfo(a.dtype).min, -1, 1, int(flat.max(initial=0)) + 1]
        if integer
        else [np.inf, np.nan]
    )
    for pos, value in ((p, v) for p in {0, flat.size // 2, flat.size - 1} if flat.size for v in values):
        bad = flat.copy()
        bad[pos] = np.array(value).astype(a.dtype)
        out[f"[{pos}]={value}"] = bad.reshape(a.shape)
    if a.ndim == 1:
        out |= {"short": a[:-1].copy(), "long": np.concatenate([a, a[-1:] if a.size else np.zeros(1, a.dtype)]),
                "reversed": a[::-1].copy()}  # fmt: skip
    if integer:
        out["random"] = rng.integers(np.iinfo(a.dtype).min, np.iinfo(a.dtype).max, a.shape, a.dtype, endpoint=True)
    return out


@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::DeprecationWarning")
def test_corrupt_packed_buffers_are_refused_or_read_in_bounds(checked: stoicc_py.Program) -> None:
    rng = np.random.default_rng(2)
    x = rand(rng, 5, 64)
    refused = accepted = 0
    for name, layout in LAYOUTS.items():
        packed = checked.kernel(name).pack("w", rand(rng, 32, 64), prune="magnitude")
        for role, arr in packed.arrays.items():
            for how, bad in _corruptions(arr, rng).items():
                corrupt = _unchecked(packed, **{role: bad})
                try:
                    corrupt.validate()
                except ValueError:
                    refused += 1
                    continue
                accepted += 1  # harmless (a value, a padding bit): computed in bounds, as the reference does
                got, want = checked.kernel(name)(x, corrupt), checked.kernel(name).reference(x, corrupt)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * np.nanmax(np.abs(want), initial=1),
                                           err_msg=f"{layout} {role} {how}")  # fmt: skip
    assert refused > accepted > 0  # both outcomes occur: the corruptions reach both
