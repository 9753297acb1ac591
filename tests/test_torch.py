"""stoicc_py.torch: compiled Linear layers against torch's own, on the same pruned or
dequantized weights (skipped without PyTorch)."""

from __future__ import annotations

import copy
import gc
import io
import os
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
stoicc_torch = pytest.importorskip("stoicc_py.torch")

Array = np.ndarray[Any, Any]


def _linear(in_features: int, out_features: int, bias: bool = True, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Linear(in_features, out_features, bias=bias)


def _magnitude_2of4(w: Array) -> Array:
    """Keep the two largest |values| of every group of four along a row."""
    groups = w.reshape(w.shape[0], -1, 4)
    drop = np.argsort(np.abs(groups), axis=-1)[..., :2]
    kept = groups.copy()
    np.put_along_axis(kept, drop, 0.0, axis=-1)
    return kept.reshape(w.shape)


def _assert_close(got: Any, want: Any) -> None:
    scale = float(want.abs().max())
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5 * scale)


def test_nm_layer_is_linear_on_the_pruned_weight_for_3d_inputs() -> None:
    linear = _linear(32, 16)
    layer = stoicc_torch.StoiccLinear.from_linear(linear, "nm(2, 4)")
    pruned = _magnitude_2of4(linear.weight.detach().numpy())
    np.testing.assert_array_equal(layer.weight.numpy(), pruned)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        got = layer(x)
    assert got.shape == (2, 5, 16) and got.dtype == torch.float32
    want = torch.nn.functional.linear(x.double(), torch.from_numpy(pruned).double(), linear.bias.detach().double())
    _assert_close(got.double(), want)


def test_int4_layer_without_bias_is_linear_on_the_dequantized_weight() -> None:
    linear = _linear(64, 8, bias=False)
    layer = stoicc_torch.StoiccLinear.from_linear(linear, "int4(group=32)")
    w, wq = linear.weight.detach().numpy(), layer.weight.numpy()
    # symmetric int4 per group of 32: scale = max|w| / 7, each value within half a step
    half_step = np.abs(w).reshape(8, 2, 32).max(axis=-1, keepdims=True) / 7 / 2
    assert np.all(np.abs(w - wq).reshape(8, 2, 32) <= half_step * (1 + 1e-6))
    assert layer.bias is None
    x = torch.randn(7, 64)
    with torch.inference_mode():
        got = layer(x)
    _assert_close(got.double(), x.double() @ torch.from_numpy(wq).double().T)


def test_compress_replaces_selected_linears_of_an_mlp_in_place() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    original = copy.deepcopy(model)
    compressed = stoicc_torch.compress(model, "nm(2, 4)", select=lambda name, _: name == "0")
    assert compressed is model
    assert isinstance(model[0], stoicc_torch.StoiccLinear) and type(model[2]) is torch.nn.Linear
    x = torch.randn(3, 32)
    with torch.no_grad():
        got = model(x)
        hidden = torch.relu(x @ torch.from_numpy(_magnitude_2of4(original[0].weight.numpy())).T + original[0].bias)
        want = original[2](hidden)
    _assert_close(got, want)


def test_generic_compress_compiles_one_kernel_for_every_shape() -> None:
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(32, 24), torch.nn.ReLU(), torch.nn.Linear(24, 20))
    original = copy.deepcopy(model)
    stoicc_torch.compress(model, "nm(2, 4)", generic=True)
    assert model[0]._kernel() is model[2]._kernel()  # one compile: its key holds no N or K
    x = torch.randn(5, 32)
    with torch.no_grad():
        hidden = torch.relu(x @ torch.from_numpy(_magnitude_2of4(original[0].weight.numpy())).T + original[0].bias)
        want = hidden @ torch.from_numpy(_magnitude_2of4(original[2].weight.numpy())).T + original[2].bias
        _assert_close(model(x), want)


def test_a_shape_the_layout_cannot_store_is_refused_naming_the_layer() -> None:
    with pytest.raises(ValueError, match=r"Linear\(6, 8\) cannot take layout nm\(2, 4\).*does not divide"):
        stoicc_torch.StoiccLinear.from_linear(_linear(6, 8), "nm(2, 4)")
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Linear(6, 8))
    with pytest.raises(ValueError, match=r"^1: Linear\(6, 8\)"):
        stoicc_torch.compress(model, "nm(2, 4)")
    assert all(type(m) is torch.nn.Linear for m in model), "a failed compress leaves the model unchanged"


def test_inference_only_and_input_checks() -> None:
    layer = stoicc_torch.StoiccLinear.from_linear(_linear(32, 16), "nm(2, 4)")
    assert list(layer.parameters()) == []
    x = torch.randn(4, 32, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference only.*no_grad"):
        layer(x)
    with torch.no_grad():
        _assert_close(layer(x), layer(x.detach().clone()))
        with pytest.raises(TypeError, match=r"computes in torch.float32, got an input of torch.float64"):
            layer(x.double())
        with pytest.raises(ValueError, match=r"expected input \[\.\.\., 32\]"):
            layer(torch.randn(4, 16))
        assert layer(torch.randn(0, 32)).shape == (0, 16)


def test_the_module_exports_its_two_names_documented() -> None:
    assert stoicc_torch.__all__ == ["StoiccLinear", "compress"]
    for obj in (stoicc_torch.StoiccLinear, stoicc_torch.StoiccLinear.from_linear, stoicc_torch.StoiccLinear.forward,
                stoicc_torch.compress):  # fmt: skip
        assert obj.__doc__


@pytest.mark.parametrize("layout", ["dense", "nm(2, 4) with int8(axis=0)"])
def test_dense_and_composite_layouts(layout: str) -> None:
    linear = _linear(16, 8, seed=2)
    layer = stoicc_torch.StoiccLinear.from_linear(linear, layout)
    w, stored = linear.weight.detach().numpy(), layer.weight.numpy()
    if layout == "dense":
        np.testing.assert_array_equal(stored, w)
    else:  # the 2:4 pattern of the magnitude-pruned weight, each kept value within an int8 step
        pruned = _magnitude_2of4(w)
        assert np.all(stored[pruned == 0] == 0)
        assert np.all(np.abs(stored - pruned) <= np.abs(w).max(axis=1, keepdims=True) / 127)
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        _assert_close(
            layer(x).double(), torch.nn.functional.linear(x.double(), layer.weight.double(), linear.bias.double())
        )


def test_a_compressed_model_deep_copies_and_saves() -> None:
    torch.manual_seed(3)
    model = stoicc_torch.compress(torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Tanh()), "nm(2, 4)")
    saved = io.BytesIO()
    torch.save(model, saved)
    saved.seek(0)
    x = torch.randn(3, 16)
    with torch.no_grad():
        want = model(x)
        for twin in (copy.deepcopy(model), torch.load(saved, weights_only=False)):
            assert torch.equal(twin(x), want)


HALF = [torch.bfloat16, torch.float16]


@pytest.fixture(scope="module", params=HALF, ids=["bf16", "f16"])
def half_layers(request: pytest.FixtureRequest) -> tuple[Any, dict[str, Any]]:
    """A Linear(64, 32) of a 16-bit dtype and its StoiccLinear in each layout: generic kernels,
    one compile each that test_compress_keeps_a_bf16_model_bf16 shares, and quicker to compile
    than the vectorised ones of static dims, which test_half.py runs on 16-bit dtypes."""
    linear = _linear(64, 32, seed=4).to(request.param)
    layouts = ("dense", "nm(2, 4)", "int4(group=32)")
    return linear, {name: stoicc_torch.StoiccLinear.from_linear(linear, name, generic=True) for name in layouts}


def _assert_half_close(got: Any, want: Any) -> None:
    """Within two units of the dtype's last place of the largest magnitude (f32 sums in another order)."""
    assert got.dtype == want.dtype
    eps = torch.finfo(want.dtype).eps
    assert float((got.float() - want.float()).abs().max()) <= 2 * eps * float(want.float().abs().max())


@pytest.mark.parametrize("layout", ["dense", "nm(2, 4)", "int4(group=32)"])
def test_half_layers_compute_in_their_dtype(half_layers: tuple[Any, dict[str, Any]], layout: str) -> None:
    """The kernel reads the 16-bit weight as it is (pruned, quantized from its exact values), and
    x, bias and result in its dtype: torch's F.linear in float32 on the same weight, rounded."""
    linear, layers = half_layers
    layer = layers[layout]
    w = linear.weight.detach().float().numpy()
    if layout == "dense":
        np.testing.assert_array_equal(layer.weight.numpy(), w)
    elif layout == "nm(2, 4)":  # 16-bit values tie often: either of two equal magnitudes may be kept
        kept = layer.weight.numpy()
        assert np.all((kept == w) | (kept == 0))
        magnitudes = lambda a: np.sort(np.abs(a).reshape(32, 16, 4), axis=-1)  # noqa: E731
        np.testing.assert_array_equal(magnitudes(kept), magnitudes(_magnitude_2of4(w)))
    else:  # scale = max|w| / 7 per group of 32 (of the 16-bit values), each within half a step
        half_step = np.abs(w).reshape(32, 2, 32).max(axis=-1, keepdims=True) / 7 / 2
        assert np.all(np.abs(w - layer.weight.numpy()).reshape(32, 2, 32) <= half_step * (1 + 1e-6))
    x = torch.randn(2, 3, 64).to(linear.weight.dtype)
    with torch.no_grad():
        got = layer(x)
        want = torch.nn.functional.linear(x.float(), layer.weight, linear.bias.float()).to(x.dtype)
    assert got.shape == (2, 3, 32)
    _assert_half_close(got, want)


def test_half_layers_refuse_other_dtypes(half_layers: tuple[Any, dict[str, Any]]) -> None:
    """As torch's F.linear does: no silent cast of the input."""
    linear, layers = half_layers
    with (
        torch.no_grad(),
        pytest.raises(TypeError, match=rf"computes in {linear.weight.dtype}, got an input of torch.float32"),
    ):
        layers["dense"](torch.randn(2, 64))
    with pytest.raises(TypeError, match="must have the weight's dtype"):
        stoicc_torch.StoiccLinear(linear.weight, linear.bias.float(), "dense")


def test_compress_keeps_a_bf16_model_bf16() -> None:
    """Each layer's result stays bfloat16 (a view of the kernel's result), fed to the next."""
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 64)).to(torch.bfloat16)
    original = copy.deepcopy(model)
    stoicc_torch.compress(model, "nm(2, 4)", generic=True)
    assert all(type(model[i]) is stoicc_torch.StoiccLinear and model[i].dtype == torch.bfloat16 for i in (0, 2))
    x = torch.randn(5, 64).to(torch.bfloat16)
    with torch.no_grad():
        got = model(x)
        hidden = torch.relu(model[0](x))
        want = torch.nn.functional.linear(hidden.float(), model[2].weight, original[2].bias.float()).to(torch.bfloat16)
    assert got.dtype == hidden.dtype == torch.bfloat16
    _assert_half_close(got, want)


# torch.compile: every StoiccLinear calls the registered op torch.ops.stoicc.linear, whose fake
# implementation gives dynamo and AOTAutograd the result's shape. Inductor compiles C++ for the
# graph around the op: about 50 s on 2 busy cores, so it runs only with STOICC_TEST_INDUCTOR=1.
BACKENDS = ["eager", "aot_eager"] + (["inductor"] if os.environ.get("STOICC_TEST_INDUCTOR") else [])


@pytest.fixture(scope="module", params=["nm(2, 4)", "int4(group=32)"])
def compressed_mlp(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """(the original Linear-ReLU-Linear, its compressed copy), on generic kernels: one compile per layout."""
    torch.manual_seed(6)
    original = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    return original, stoicc_torch.compress(copy.deepcopy(original), request.param, generic=True)


def _mlp_reference(model: Any, x: Any) -> Any:
    """The compressed MLP in float64 by torch's F.linear, on each layer's effective weight."""
    hidden = torch.relu(torch.nn.functional.linear(x.double(), model[0].weight.double(), model[0].bias.double()))
    return torch.nn.functional.linear(hidden, model[2].weight.double(), model[2].bias.double())


SHAPES = [(5, 32), (7, 32), (2, 3, 32), (1, 32), (4, 9, 32)]


def _compiled_runs(model: Any, backend: str) -> tuple[list[Any], list[Any], int]:
    """(inputs, results of torch.compile(model, fullgraph=True), graphs compiled) for SHAPES."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()  # the dynamic dims dynamo learnt of earlier models' frames would save graphs here
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(model, backend=counter, fullgraph=True)  # fullgraph: a graph break is an error
    torch.manual_seed(7)
    xs = [torch.randn(*shape) for shape in SHAPES]
    with torch.no_grad():
        return xs, [compiled(x) for x in xs], counter.frame_count


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_of_a_compressed_model_matches_eager_and_the_reference(
    compressed_mlp: tuple[Any, Any], backend: str
) -> None:
    """Batch sizes and a sequence axis vary: the compressed model compiles no more graphs than
    its uncompressed original (torch's own rules: a static graph, then a dynamic one per rank,
    size 1 specialised)."""
    original, model = compressed_mlp
    xs, results, graphs = _compiled_runs(model, backend)
    with torch.no_grad():
        for x, got in zip(xs, results):
            assert got.shape == (*x.shape[:-1], 16)
            assert torch.equal(got, model(x)), "the same kernels on the same inputs"
            _assert_close(got.double(), _mlp_reference(model, x))
    assert graphs == _compiled_runs(original, backend)[2]


def test_the_op_has_a_fake_implementation_and_refuses_a_freed_layer() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    layer = stoicc_torch.StoiccLinear.from_linear(_linear(64, 16), "nm(2, 4)", generic=True)  # the MLP's kernel
    with FakeTensorMode():
        y = torch.ops.stoicc.linear(torch.empty(11, 64, dtype=torch.bfloat16), None, layer.handle, 16)
    assert y.shape == (11, 16) and y.dtype == torch.bfloat16, "the shape and dtype alone, no kernel run"
    twin = copy.deepcopy(layer)
    assert twin.handle != layer.handle, "a copy is another layer with its own handle"
    handle = twin.handle
    del twin
    gc.collect()
    with pytest.raises(RuntimeError, match=rf"no live StoiccLinear has handle {handle}"):
        torch.ops.stoicc.linear(torch.randn(2, 64), layer.bias, handle, 16)
