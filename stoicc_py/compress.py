"""Recipes, and `stoicc compress`: pack the matrices of a model file as a recipe says and write
them with stoicc_py.save_packed (docs/compress.md).

A recipe is a TOML file whose [layers] table maps tensor-name globs (fnmatch) to a layout, a
compression method and pack() options; the first glob that matches a name wins, then
`default`; a name that nothing matches, a layout "dense" and every tensor that is not 2-D stay
dense, as they are:

    default = {layout = "int8"}
    [layers]
    "*embed*" = {layout = "dense"}
    "model.layers.*.mlp.*" = {layout = "nm(2, 4) with int4(group=32)", method = "sparsegpt"}

`method` and `options` go to pack() as keyword arguments (`method=...`, `**options`): the keys
that pack() takes are the keys a recipe may use, so a method or option that pack() learns is
usable in recipes with no change here, and pack() itself judges their values.

A LLaMA-family GGUF model is compressed layer by layer (compress_llama: llama_model.compress_model,
calibrated on token windows of a text), its tensors named as in the GGUF file; the recipe must
then give each layer's attention projections one layout and method, and its MLP's one.
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, cast

from stoicc_py.diagnostics import CompileError
from stoicc_py.dialects.layout import DenseLayoutAttr, LayoutAttr
from stoicc_py.explore import Calibration, ExploreError
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.models.llama_model import (
    ATTN,
    CompressedLlama,
    LlamaWeights,
    calibration_windows,
    compress_model,
)
from stoicc_py.models.llama_packed import MLP, NORM, layer_name, llama_arrays, llama_tensors
from stoicc_py.models.weights import Array, Weights, load_weights
from stoicc_py.packing import PackedTensor, pack
from stoicc_py.packing.methods import DATA_METHODS

LOADERS: dict[str, Callable[[Path], Weights]] = {".safetensors": load_weights, ".npz": load_weights}
"""How `stoicc compress` reads a model, by file suffix (a model format adds its loader here)."""
LLAMA_SUFFIX = ".gguf"
"""A LLaMA-family model, compressed layer by layer (compress_llama)."""
CALIBRATION_WINDOW, CALIBRATION_STRIDE = 512, 256
"""The calibration text's token windows: WINDOW tokens each, one starting every STRIDE."""
RULE_KEYS = ("layout", "method", "options")
TOP_KEYS = ("default", "layers")
_NOT_OPTIONS = ("w", "layout", "method", "activations")  # given by the rule or the calibration, not `options`


class RecipeError(ValueError):
    """A recipe that does not parse or validate: `RECIPE: KEY: what is wrong`."""


@dataclass(frozen=True)
class Rule:
    """What a recipe says for the names that `glob` matches: `layout` None keeps them dense."""

    key: str
    """Where the recipe says it: `layers.'GLOB'` or `default`."""
    glob: str
    layout: LayoutAttr | None
    method: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def pack(self, w: Array, activations: Array | None) -> PackedTensor:
        assert self.layout is not None
        method: dict[str, Any] = {} if self.method is None else {"method": self.method}
        return pack(w, self.layout, activations=activations, **method, **self.options)


@dataclass(frozen=True)
class Recipe:
    path: str
    rules: list[Rule]
    default: Rule | None

    def rule(self, name: str) -> Rule | None:
        """The first rule whose glob matches `name`, else the default (None: none)."""
        return next((r for r in self.rules if fnmatch(name, r.glob)), self.default)


def load_recipe(path: str | Path) -> Recipe:
    """The recipe in a TOML file; a RecipeError names the file and the key at fault."""
    text = Path(path).read_text()  # an OSError names the file as it is
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML: {err}") from None
    _known(path, "the recipe", data, TOP_KEYS)
    layers = data.get("layers", {})
    if not isinstance(layers, dict):
        raise RecipeError(f"{path}: layers: must be a table of GLOB = {{layout = ...}}")
    rules = [_rule(path, f"layers.{glob!r}", glob, entry) for glob, entry in layers.items()]
    default = _rule(path, "default", "default", data["default"]) if "default" in data else None
    return Recipe(str(path), rules, default)


def _known(path: str | Path, what: str, table: dict[str, Any], keys: tuple[str, ...]) -> None:
    if unknown := [k for k in table if k not in keys]:
        raise RecipeError(f"{path}: {what}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")


def _rule(path: str | Path, key: str, glob: str, entry: object) -> Rule:
    if not isinstance(entry, dict) or not isinstance(entry.get("layout"), str):
        raise RecipeError(f'{path}: {key}: must be a table with a layout, e.g. {{layout = "int8"}}')
    _known(path, key, entry, RULE_KEYS)
    try:
        layout = parse_layout(entry["layout"])
    except CompileError as err:
        raise RecipeError(f"{path}: {key}: layout {entry['layout']!r}: {err.message}") from None
    method, options = entry.get("method"), entry.get("options", {})
    if method is not None and not isinstance(method, str):
        raise RecipeError(f"{path}: {key}: method must be a string, got {method!r}")
    if not isinstance(options, dict):
        raise RecipeError(f"{path}: {key}: options must be a table, got {options!r}")
    takes = [p for p in inspect.signature(pack).parameters if p not in _NOT_OPTIONS]
    _known(path, f"{key}.options", options, tuple(takes))
    return Rule(key, glob, None if isinstance(layout, DenseLayoutAttr) else layout, method, options)


@dataclass(frozen=True)
class Row:
    """One tensor of a compressed model, for the table `stoicc compress` prints."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str
    method: str
    before: int
    after: int


def compress(
    weights: Weights, recipe: Recipe, calibration: Calibration | None = None
) -> tuple[dict[str, PackedTensor | Array], list[Row]]:
    """Every tensor of `weights`, packed as `recipe` says (else as it is), and a Row for each.
    `calibration` gives each packed matrix its activations [rows, cols] where it has some."""
    out: dict[str, PackedTensor | Array] = {}
    rows = []
    for name, w in weights.items():
        rule = recipe.rule(name) if w.ndim == 2 else None
        if rule is None or rule.layout is None:
            out[name] = w
            rows.append(_row(name, w, w, None))
            continue
        try:
            packed = rule.pack(w, _activations(calibration, name, w.shape[1]))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name} ({recipe.path}: {rule.key}): {err}") from None
        out[name] = packed
        rows.append(_row(name, w, packed, rule.method))
    return out, rows


def _row(name: str, w: Array, t: PackedTensor | Array, method: str | None) -> Row:
    if not isinstance(t, PackedTensor):
        return Row(name, w.shape, str(w.dtype), "dense", "", w.nbytes, w.nbytes)
    scale = 0 if t.input_scale is None else t.input_scale.nbytes
    return Row(name, w.shape, str(w.dtype), t.layout.summary(), method or "", w.nbytes, t.nbytes + scale)


def _activations(calibration: Calibration | None, name: str, k: int) -> Array | None:
    if calibration is None:
        return None
    try:
        return calibration.activations(name, k)
    except ExploreError:  # none for this matrix: pack() says so if its method needs some
        return None


def unused(recipe: Recipe, names: list[str]) -> list[str]:
    """The recipe's globs that match none of `names` (a typo, or the wrong model)."""
    return [r.glob for r in recipe.rules if not any(fnmatch(n, r.glob) for n in names)]


def table(rows: list[Row]) -> str:
    """Aligned columns, one line per tensor and a total."""
    before, after = sum(r.before for r in rows), sum(r.after for r in rows)
    cells = [["tensor", "shape", "dtype", "layout", "method", "bytes", "packed", "ratio"]]
    cells += [[r.name, "x".join(map(str, r.shape)), r.dtype, r.layout, r.method, str(r.before), str(r.after),
               _ratio(r.before, r.after)] for r in rows]  # fmt: skip
    cells.append(["total", "", "", "", "", str(before), str(after), _ratio(before, after)])
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    right = {5, 6, 7}
    return "\n".join(
        "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
        for line in cells
    )


def _ratio(before: int, after: int) -> str:
    return f"{before / after:.2f}x" if after else "-"


def load_model(path: Path) -> Weights:
    """The tensors of a model file, read by the loader of its suffix (LOADERS)."""
    if path.suffix not in LOADERS:
        raise ValueError(f"{path}: a model must be a {', '.join(LOADERS)} or {LLAMA_SUFFIX} file")
    return LOADERS[path.suffix](path)


# ---------------------------------------------------------------------------- LLaMA models, layer by layer


def load_gguf_model(path: Path, calibration: Path | None) -> tuple[LlamaWeights, list[list[int]]]:
    """The LLaMA model of a GGUF file and its calibration windows: the text file `calibration`
    tokenized with the model's tokenizer (none without it)."""
    from stoicc_py.models.gguf_llama import gguf_tokenizer, load_gguf

    weights = load_gguf(path)
    if calibration is None:
        return weights, []
    tokens = gguf_tokenizer(path).encode(calibration.read_text()).ids
    return weights, calibration_windows(tokens, CALIBRATION_WINDOW, CALIBRATION_STRIDE)


@dataclass(frozen=True)
class LlamaPlan:
    """A recipe as compress_model takes it."""

    layouts: list[tuple[str, str]]
    """Per layer, (attention projections' layout, MLP's)."""
    methods: tuple[str | None, str | None]
    """The attention's method and the MLP's, the same in every layer."""
    options: dict[str, Any]
    """pack() options, the same for every projection."""
    keys: tuple[str, str]
    """The recipe keys that gave the attention's and the MLP's method ("" if all dense)."""


def llama_plan(recipe: Recipe, weights: LlamaWeights) -> LlamaPlan:
    """The layouts, methods and options that `recipe` gives the projections of `weights` (by
    their GGUF names); a RecipeError naming the glob where the recipe says what compress_model
    cannot do: two layouts or methods in one layer's attention (or MLP), a method or options
    that differ between layers, options that differ between attention and MLP, a packed
    embedding or lm head, input scales (`calibrate`)."""
    for name in (n for n in llama_arrays(weights) if not n.startswith("blk.")):
        rule = recipe.rule(name)
        if name != NORM and rule is not None and rule.layout is not None:
            raise RecipeError(f"{recipe.path}: {rule.key}: packs {name}, but a LLaMA model's embeddings and lm "
                              f'head stay dense: add "{name}" = {{layout = "dense"}} before it')  # fmt: skip
    layouts: list[tuple[str, str]] = []
    chosen: list[Rule | None] = [None, None]  # the first packing rule of the attention, of the MLP
    for i in range(len(weights.layers)):
        pair = []
        for slot, group in enumerate((ATTN, MLP)):
            rule = _group_rule(recipe, i, group)
            pair.append("dense" if rule is None or rule.layout is None else rule.layout.summary())
            if rule is not None and rule.layout is not None:
                chosen[slot] = _same_method(recipe, chosen[slot], rule)
        layouts.append((pair[0], pair[1]))
    attn, mlp = chosen
    if attn is not None and mlp is not None and attn.options != mlp.options:
        raise RecipeError(f"{recipe.path}: {mlp.key}: options {mlp.options} differ from {attn.key}'s "
                          f"{attn.options}: compress_model takes one set of pack() options for every projection")  # fmt: skip
    first = attn or mlp
    options = first.options if first else {}
    if first and "calibrate" in options:
        raise RecipeError(f"{recipe.path}: {first.key}: options.calibrate: a LLaMA model's compiled decoder "
                          "block has no input scales to fold (use method = 'gptq' ...)")  # fmt: skip
    methods = (attn.method if attn else None, mlp.method if mlp else None)
    return LlamaPlan(layouts, methods, dict(options), (attn.key if attn else "", mlp.key if mlp else ""))


def _group_rule(recipe: Recipe, i: int, group: tuple[str, ...]) -> Rule | None:
    """The rule of layer i's projections `group`, which must all have the same."""
    rules = [(layer_name(i, n), recipe.rule(layer_name(i, n))) for n in group]
    what = [_what(r) for _, r in rules]
    if len(set(what)) > 1:
        (a, ra), (b, rb) = (rules[0], next(x for x, w in zip(rules, what) if w != what[0]))
        ra, rb, a, b = (ra, rb, a, b) if ra is not None else (rb, ra, b, a)
        assert ra is not None
        other = f"{rb.key} gives {b}" if rb is not None else f"no rule packs {b}"
        raise RecipeError(f"{recipe.path}: {ra.key}: gives {a} {_describe(ra)}, but {other} "
                          f"{_describe(rb)}: a LLaMA layer's attention projections (q, k, v, o) take one "
                          "layout and method, as do its MLP's (gate, up, down)")  # fmt: skip
    return rules[0][1]


def _what(rule: Rule | None) -> tuple[str, str | None, str]:
    if rule is None or rule.layout is None:
        return ("dense", None, "")
    return (rule.layout.summary(), rule.method, repr(sorted(rule.options.items())))


def _describe(rule: Rule | None) -> str:
    layout, method, _ = _what(rule)
    return (
        f"{layout}" + (f" by {method}" if method else "") + (f" with {rule.options}" if rule and rule.options else "")
    )


def _same_method(recipe: Recipe, first: Rule | None, rule: Rule) -> Rule:
    if first is not None and (first.method, first.options) != (rule.method, rule.options):
        raise RecipeError(f"{recipe.path}: {rule.key}: method {rule.method!r} with options {rule.options}, but "
                          f"{first.key} gives {first.method!r} with {first.options}: compress_model runs one method "
                          "with one set of options for every layer's attention, and one for every MLP")  # fmt: skip
    return first or rule


def compress_llama(
    weights: LlamaWeights, recipe: Recipe, calibration: Sequence[Sequence[int]] = ()
) -> tuple[CompressedLlama, list[Row]]:
    """The model compressed layer by layer as `recipe` says (llama_plan, compress_model), each
    layer calibrated on the `calibration` token windows run through the compressed layers before
    it; a Row per tensor (GGUF names)."""
    plan = llama_plan(recipe, weights)
    for key, method in zip(plan.keys, plan.methods):
        if method in DATA_METHODS and not calibration:
            raise RecipeError(f"{recipe.path}: {key}: method {method!r} needs calibration text (--calibration FILE)")
    try:
        # a None method is pack()'s default (round to nearest, or prune= from the options)
        methods = cast("tuple[str, str]", plan.methods)
        out = compress_model(weights, plan.layouts, calibration, methods, **plan.options)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{recipe.path}: {' / '.join(k for k in plan.keys if k)}: {err}") from None
    method_of = {layer_name(i, n): method for i in range(len(weights.layers))
                 for group, method in zip((ATTN, MLP), plan.methods) for n in group}  # fmt: skip
    packed = llama_tensors(out.weights, out.packed)
    return out, [_row(name, w, packed[name], method_of.get(name)) for name, w in llama_arrays(weights).items()]
