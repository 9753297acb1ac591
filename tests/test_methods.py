"""Compression methods (stoicc_py.packing.methods): GPTQ, SparseGPT, Wanda against round to
nearest and magnitude pruning on a small layer with correlated activations, checked in numpy."""

from __future__ import annotations

import numpy as np
import pytest

import stoicc_py
from stoicc_py.packing.hessian import hessian_of
from stoicc_py.packing.methods import nm_keep

ROWS, COLS, N = 64, 128, 384
HYBRID = "hybrid(tile=[32, 32], formats=[dense, nm(2, 4)])"


@pytest.fixture(scope="module")
def layer() -> tuple[np.ndarray, np.ndarray]:
    """w [64, 128] and correlated activations x = z @ a [384, 128]."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, COLS)).astype(np.float32) @ rng.standard_normal((COLS, COLS)).astype(np.float32)
    return rng.standard_normal((ROWS, COLS)).astype(np.float32), x


def out_error(layer: tuple[np.ndarray, np.ndarray], packed: stoicc_py.PackedTensor) -> float:
    w, x = layer
    y = x.astype(np.float64) @ w.T
    return float(np.linalg.norm(y - x @ packed.unpack().T.astype(np.float64)) / np.linalg.norm(y))


def method(layer: tuple[np.ndarray, np.ndarray], layout: str, name: str, **kw: object) -> stoicc_py.PackedTensor:
    """pack with a method; checks that the packed tensor holds exactly the method's values."""
    w, x = layer
    packed = stoicc_py.pack(w, layout, method=name, activations=x, **kw)
    from stoicc_py.packing.methods import compress

    values = compress(w, packed.layout, name, activations=x, **kw).values  # type: ignore[arg-type]
    np.testing.assert_array_equal(packed.unpack(), values)
    return packed


@pytest.mark.parametrize(
    ("layout", "margin"),
    [("int4(group=32)", 0.8), ("int3(group=32)", 0.8), ("int2(group=32)", 0.95), ("int8", 0.8),
     ("int4(group=48, symmetric=false)", 0.8), ("ternary(group=32)", 0.9), ("int5", 0.8)],
)  # fmt: skip
def test_gptq_beats_rtn(layer, layout: str, margin: float) -> None:
    rtn = out_error(layer, stoicc_py.pack(layer[0], layout))
    assert out_error(layer, method(layer, layout, "gptq")) < margin * rtn


def test_gptq_act_order_keeps_the_layout_groups(layer) -> None:
    # act-order sweeps columns out of order; the scale groups stay the layout's (of the
    # original columns), so the codes re-pack bit for bit and int2 gains most
    layout = "int2(group=32)"
    packed = method(layer, layout, "gptq", act_order=True)
    assert out_error(layer, packed) < 0.8 * out_error(layer, stoicc_py.pack(layer[0], layout))


def test_gptq_ragged_group_and_hessian(layer) -> None:
    # 128 = 2 * 48 + 32: the ragged last group gets its own grid; hessian= equals activations=
    w, x = layer
    by_h = stoicc_py.pack(w, "int4(group=48)", method="gptq", hessian=hessian_of(x, COLS))
    np.testing.assert_array_equal(by_h.unpack(), method(layer, "int4(group=48)", "gptq").unpack())


@pytest.mark.parametrize("layout", ["nm(2, 4)", "nm(4, 8)"])
def test_sparsegpt_beats_magnitude_and_wanda(layer, layout: str) -> None:
    w, _ = layer
    sgpt = out_error(layer, method(layer, layout, "sparsegpt"))
    assert sgpt < 0.85 * out_error(layer, stoicc_py.pack(w, layout, method="magnitude"))
    assert sgpt < 0.85 * out_error(layer, method(layer, layout, "wanda"))


@pytest.mark.parametrize("layout", ["csr", "block([4, 4])"])
def test_unstructured_and_block_at_sparsity(layer, layout: str) -> None:
    packed = method(layer, layout, "sparsegpt", sparsity=0.5)
    assert (packed.unpack() == 0).mean() == pytest.approx(0.5, abs=0.01)
    assert out_error(layer, packed) < 0.85 * out_error(layer, method(layer, layout, "wanda", sparsity=0.5))


@pytest.mark.parametrize("q", ["int4(group=32)", "int4(group=32, symmetric=false)", "int4"])
def test_sparsegpt_joint_with_quantization(layer, q: str) -> None:
    w, _ = layer
    layout = f"nm(2, 4) with {q}"
    joint = method(layer, layout, "sparsegpt")
    assert joint.stored() is not None and (joint.unpack() != 0).reshape(ROWS, -1, 4).sum(axis=2).max() <= 2
    assert out_error(layer, joint) < 0.9 * out_error(layer, stoicc_py.pack(w, layout, method="magnitude"))


def test_hybrid_plan_from_the_hessian(layer) -> None:
    # OBS tile cost + update against today's activation-aware plan with magnitude pruning
    w, x = layer
    obs = method(layer, HYBRID, "sparsegpt", sparsity=0.25)
    today = stoicc_py.pack(w, HYBRID, method="magnitude", plan="auto", sparsity=0.25, activations=x)
    assert (obs.unpack() == 0).mean() == pytest.approx(0.25, abs=0.01)
    assert out_error(layer, obs) < 0.75 * out_error(layer, today)


def test_nm_keep_pads_a_ragged_group() -> None:
    score = np.array([[4.0, 3, 2, 1, 0, 5]])
    np.testing.assert_array_equal(nm_keep(score, 2, 4), [[True, True, False, False, True, True]])


def test_errors(layer) -> None:
    w, x = layer
    with pytest.raises(ValueError, match=r"method='gptq' needs a quantized layout .* not nm\(2, 4\)"):
        stoicc_py.pack(w, "nm(2, 4)", method="gptq", activations=x)
    with pytest.raises(ValueError, match=r"method='sparsegpt' needs a sparse layout .* not int4"):
        stoicc_py.pack(w, "int4", method="sparsegpt", activations=x)
    with pytest.raises(ValueError, match=r"shape \[rows, 128\] .* got \[384, 64\]"):
        stoicc_py.pack(w, "int4", method="gptq", activations=x[:, :64])
    with pytest.raises(ValueError, match="needs activations= .* or hessian="):
        stoicc_py.pack(w, "int4", method="gptq")
    with pytest.raises(ValueError, match="not finite"):
        stoicc_py.pack(w, "int4", method="gptq", hessian=np.full((COLS, COLS), np.nan))
    with pytest.raises(ValueError, match=r"csr\(index=i32\) needs sparsity="):
        stoicc_py.pack(w, "csr", method="sparsegpt", activations=x)
    with pytest.raises(ValueError, match="not positive definite after damping 0"):
        stoicc_py.pack(w, "int4", method="gptq", hessian=-np.eye(COLS), damp=0)


def test_singular_hessian_is_damped(layer) -> None:
    # rank 8 activations and dead channels: damping makes H invertible; dead inputs' weights are 0
    w, x = layer
    low = x[:, :8] @ np.random.default_rng(1).standard_normal((8, COLS)).astype(np.float32)
    low[:, :4] = 0
    packed = stoicc_py.pack(w, "int4(group=32)", method="gptq", activations=low)
    assert (packed.unpack()[:, :4] == 0).all() and np.isfinite(packed.unpack()).all()


def test_inverse_cholesky() -> None:
    from stoicc_py.packing.hessian import inverse_cholesky

    a = np.random.default_rng(2).standard_normal((200, 48))
    u = inverse_cholesky(a.T @ a, damp=0)
    np.testing.assert_array_equal(u, np.triu(u))
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(a.T @ a), rtol=1e-9, atol=1e-12)
    # Kept by the Hessian's contents (an equal copy finds it), read-only; another damp or H is
    # factored anew.
    h = a.T @ a
    assert inverse_cholesky(h.copy(), damp=0) is u and not u.flags.writeable
    damped = inverse_cholesky(h, damp=0.1)
    assert damped is not u and not np.allclose(damped, u)
    h[0, 0] += 1.0
    assert inverse_cholesky(h, damp=0) is not u
