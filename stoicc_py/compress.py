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
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from stoicc_py.diagnostics import CompileError
from stoicc_py.dialects.layout import DenseLayoutAttr, LayoutAttr
from stoicc_py.explore import Calibration, ExploreError
from stoicc_py.frontend.layouts import parse_layout
from stoicc_py.models.weights import Array, Weights, load_weights
from stoicc_py.packing import PackedTensor, pack

LOADERS: dict[str, Callable[[Path], Weights]] = {".safetensors": load_weights, ".npz": load_weights}
"""How `stoicc compress` reads a model, by file suffix (a model format adds its loader here)."""
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
            rows.append(Row(name, w.shape, str(w.dtype), "dense", "", w.nbytes, w.nbytes))
            continue
        try:
            packed = rule.pack(w, _activations(calibration, name, w.shape[1]))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name} ({recipe.path}: {rule.key}): {err}") from None
        out[name] = packed
        scale = 0 if packed.input_scale is None else packed.input_scale.nbytes
        summary, method = packed.layout.summary(), rule.method or ""
        rows.append(Row(name, w.shape, str(w.dtype), summary, method, w.nbytes, packed.nbytes + scale))
    return out, rows


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
        raise ValueError(f"{path}: a model must be a {' or '.join(LOADERS)} file")
    return LOADERS[path.suffix](path)
