"""metadata-layout: decide the physical buffers of every non-dense parameter.

Each sparse or quantized parameter gets a `tdsl.storage` argument attribute, and
each `tdsl.quantize` a `storage` attribute:
the buffers (values, indices, row pointers, tile tables) with their element types,
shapes and encoding parameters, as its layout attribute derives them for this
target. Bufferization turns exactly these buffers into kernel arguments, and the
runtime packer fills exactly these buffers: one description, read by both.

A packed parameter may have size symbols (`w: f32[N, K] @ nm(2, 4)`): a buffer dim
that depends on them is dynamic, and `tdsl.buffer_dims` names it, per buffer and
axis, as a size symbol: the parameter's own symbol where the dim is one (`N`), else
a derived one (`w_values_dim1`: N:M slots per row, code bytes per row, ...) that the
runtime binds from the packed tensor's buffers and the kernel takes as an argument.
Which dims depend on which symbol is found by deriving the storage at two probe
sizes; an encoding param that varies with the sizes is recorded as -1 (the lowering
reads the buffer's runtime dims instead).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DYNAMIC_INDEX, ArrayAttr, DictionaryAttr, IntAttr, MemRefType, ModuleOp, StringAttr
from xdsl.ir import Attribute
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.utils.exceptions import VerifyException

from stoicc_py.diagnostics import op_error
from stoicc_py.dialects.layout import BufferAttr, StorageAttr
from stoicc_py.dialects.tdsl import QuantizeOp, TensorType

STORAGE = "tdsl.storage"
BUFFER_DIMS = "tdsl.buffer_dims"
PROBE = 720720 * 1024
"""A size divisible by every granule up to 16 and by powers of two up to 2^14 (N:M
groups, blocks, tiles, scale groups)."""
PRIMES = ((1009, 1013, 1019, 1021), (2003, 2011, 2017, 2027))
"""Symbol i is probed at PROBE * PRIMES[0][i] and PROBE * PRIMES[1][i]: no dim derived
from one symbol by a small ratio (K / 2 slots) can equal another symbol's probe."""


def param_name(fn: func.FuncOp, index: int) -> str:
    attrs = fn.arg_attrs.data[index].data if fn.arg_attrs else {}
    name = attrs.get("tdsl.name")
    return name.data if isinstance(name, StringAttr) else f"arg{index}"


@dataclass
class RecordStorage(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, fn: func.FuncOp, rewriter: PatternRewriter, /):
        old = list(fn.arg_attrs.data) if fn.arg_attrs else [DictionaryAttr({})] * len(fn.args)
        new = list(old)
        for i, t in enumerate(fn.function_type.inputs):
            if not isinstance(t, TensorType) or t.layout.is_dense or STORAGE in old[i].data:
                continue
            name = param_name(fn, i)
            try:
                storage, dims = symbolic_storage(t, name)
            except VerifyException as err:
                raise op_error(fn, f"parameter '{name}': {err}") from None
            extra: dict[str, Attribute] = {BUFFER_DIMS: dims} if dims is not None else {}
            new[i] = DictionaryAttr({**old[i].data, STORAGE: storage, **extra})
        if new != old:
            fn.arg_attrs = ArrayAttr(new)
            rewriter.handle_operation_modification(fn)


def symbolic_storage(t: TensorType, name: str) -> tuple[StorageAttr, ArrayAttr[Attribute] | None]:
    """The storage of parameter `name` of type `t`, and for symbolic dims its
    `tdsl.buffer_dims` (per buffer, per axis: the static size, -1 for a length the
    data decides, or the size symbol that holds it)."""
    if all(isinstance(d, int) for d in t.dims):
        return t.layout.storage([int(d) for d in t.dims], t.element_type), None
    symbols = list(dict.fromkeys(d for d in t.dims if isinstance(d, str)))
    probes = [{s: PROBE * primes[j] for j, s in enumerate(symbols)} for primes in PRIMES]
    a, b = (t.layout.storage([d if isinstance(d, int) else p[d] for d in t.dims], t.element_type) for p in probes)
    buffers: list[BufferAttr] = []
    all_dims: list[Attribute] = []
    for x, y in zip(a.buffers.data, b.buffers.data, strict=True):
        shape = [_dim(f"{name}_{x.role.data.replace('.', '_')}_dim{axis}", dx, dy, probes)
                 for axis, (dx, dy) in enumerate(zip(x.type.get_shape(), y.type.get_shape()))]  # fmt: skip
        sizes = [d if isinstance(d, int) and d >= 0 else DYNAMIC_INDEX for d in shape]
        buffers.append(BufferAttr(x.role.data, MemRefType(x.type.element_type, sizes), x.kind.data, x.is_unsigned))
        all_dims.append(ArrayAttr(IntAttr(d) if isinstance(d, int) else StringAttr(d) for d in shape))
    params = {k: a.param(k) if a.param(k) == b.param(k) else -1 for k in a.params.data}
    return StorageAttr(buffers, params), ArrayAttr(all_dims)


def _dim(derived: str, first: int, second: int, probes: Sequence[dict[str, int]]) -> int | str:
    """A buffer dim from its sizes at the two probes: static, data-decided (-1), one of
    the symbols, or the derived symbol `derived`."""
    if first == second:
        return first if first >= 0 else -1
    return next((s for s in probes[0] if probes[0][s] == first and probes[1][s] == second), derived)


def buffer_dims(attrs: DictionaryAttr) -> list[list[int | str]] | None:
    """The `tdsl.buffer_dims` of a parameter (None when its dims are static)."""
    dims = attrs.data.get(BUFFER_DIMS)
    if not isinstance(dims, ArrayAttr):
        return None
    return [[d.data for d in buf.data] for buf in dims.data]


def derived_symbols(fn: func.FuncOp) -> list[str]:
    """The derived size symbols of the packed parameters of `fn`, in parameter and buffer order."""
    attrs = fn.arg_attrs.data if fn.arg_attrs else ()
    seen: dict[str, None] = {}
    for i, a in enumerate(attrs):
        t = fn.function_type.inputs.data[i]
        params = {d for d in t.dims if isinstance(d, str)} if isinstance(t, TensorType) else set()
        for dims in buffer_dims(a) or []:
            seen.update((d, None) for d in dims if isinstance(d, str) and d not in params)
    return list(seen)


@dataclass
class RecordQuantizeStorage(RewritePattern):
    """The storage of a value quantized at run time; its leading dim may be a symbol."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: QuantizeOp, rewriter: PatternRewriter, /):
        if op.storage is not None or op.result is None:
            return
        t = op.result.type
        if not isinstance(t.dims[-1], int):
            raise op_error(op, f"quantize needs a static last dimension, got {t}")
        dims = [d if isinstance(d, int) else DYNAMIC_INDEX for d in t.dims]
        op.attributes["storage"] = t.layout.storage(dims, t.element_type)
        rewriter.handle_operation_modification(op)


@dataclass(frozen=True)
class MetadataLayout(ModulePass):
    name = "metadata-layout"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier([RecordStorage(), RecordQuantizeStorage()])).rewrite_module(op)
