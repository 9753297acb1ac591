"""Building blocks for loop nests on memrefs: index constants, sizes, scf.for nests,
and the scalar body of every elementwise function.

A bf16 or f16 element is computed with in f32: `load` and `vload` widen it (exactly),
`store` and `vstore` round an f32 value to it (to nearest even). Every lowering reads and
writes buffers through these, so no op has a 16-bit case of its own.

Used by tdsl-lower-to-loops; canonicalize and cse later merge the constants and
sizes that these helpers create freely.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from xdsl.builder import Builder
from xdsl.dialects import arith, func, memref, scf, vector
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    AnyFloat,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    VectorType,
    f32,
    i1,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint
from xdsl.utils.hints import isa

from stoicc_py import dims
from stoicc_py.dialects import tdsl
from stoicc_py.dialects.tdsl import Dim

FAST = arith.FastMathFlagsAttr("fast")
"""Lets LLVM reassociate float reductions, which is what vectorises them."""

Scalar = Callable[["LoopBuilder", SSAValue], SSAValue]


def compute_type(element: Attribute) -> Attribute:
    """The type that values of a buffer's element type are computed in: f32 for bf16/f16."""
    return f32 if element in tdsl.HALF_FLOATS else element


def computes_in_f32(buf: SSAValue) -> bool:
    """Whether a buffer's elements are computed with in f32 (f32, bf16, f16): the float
    vector kernels read it through `vload`, which widens."""
    return isinstance(buf.type, MemRefType) and compute_type(buf.type.element_type) == f32


def element_type(buf: SSAValue) -> Attribute:
    assert isinstance(buf.type, MemRefType), buf.type
    return buf.type.element_type


def symbol_args(op: Operation) -> dict[str, SSAValue]:
    """The size-symbol arguments (`tdsl.symbol`) of the bufferized kernel around `op`."""
    fn: Operation | None = op
    while fn is not None and not isinstance(fn, func.FuncOp):
        fn = fn.parent_op()
    assert fn is not None, "an op outside a kernel"
    attrs = fn.arg_attrs.data if fn.arg_attrs else ()
    return {a.data["tdsl.symbol"].data: arg for arg, a in zip(fn.args, attrs)  # type: ignore[attr-defined]
            if isinstance(a.data.get("tdsl.symbol"), StringAttr)}  # fmt: skip


class LoopBuilder:
    """An xDSL Builder with loop-nest helpers."""

    def __init__(self, builder: Builder):
        self.b = builder

    def insert(self, op: Operation) -> SSAValue:
        self.b.insert(op)
        return op.results[0]

    def index(self, value: int | SSAValue) -> SSAValue:
        """An index constant (a size known only at run time, already a value, is itself)."""
        if isinstance(value, SSAValue):
            return value
        return self.insert(arith.ConstantOp(IntegerAttr(value, IndexType())))

    def f32(self, value: float) -> SSAValue:
        return self.insert(arith.ConstantOp(FloatAttr(value, f32)))

    def index_to_f32(self, value: SSAValue) -> SSAValue:
        """An index (a size) as an f32."""
        return self.insert(arith.SIToFPOp(self.insert(arith.IndexCastOp(value, i64)), f32))

    def zero(self, type: Attribute) -> SSAValue:
        """0 of a float or integer element type."""
        if isinstance(type, IntegerType):
            return self.insert(arith.ConstantOp(IntegerAttr(0, type)))
        assert isa(type, AnyFloat), type
        return self.insert(arith.ConstantOp(FloatAttr(0.0, type)))

    def splat(self, type: VectorType, value: int | float) -> SSAValue:
        """A vector of `value` in every lane: an integer in integer lanes, a float in float lanes."""
        if isinstance(value, int) and isa(type, VectorType[IntegerType]):
            return self.insert(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(type, [value])))
        assert isa(type, VectorType[AnyFloat]), type
        return self.insert(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(type, [value])))

    def size(self, buf: SSAValue, axis: int) -> SSAValue:
        t = buf.type
        assert isinstance(t, MemRefType)
        static = t.get_shape()[axis]
        if static >= 0:
            return self.index(static)
        return self.insert(memref.DimOp(buf, self.index(axis)))

    def sizes(self, buf: SSAValue) -> list[SSAValue]:
        assert isinstance(buf.type, MemRefType)
        return [self.size(buf, i) for i in range(buf.type.get_num_dims())]

    def dim(self, d: Dim, sizes: Mapping[str, SSAValue]) -> SSAValue:
        """The index value of a dim (a size, a symbol, or an expression such as P+T)
        from the index values of the symbols."""
        if isinstance(d, str) and dims.is_symbol(d):
            return sizes[d]
        coeffs, const = dims.affine(d)
        value = self.index(const)
        for name, coeff in coeffs.items():
            term = sizes[name] if coeff == 1 else self.mul(sizes[name], self.index(coeff))
            value = self.add(value, term)
        return value

    def view(self, source: SSAValue, offset: SSAValue, sizes: Sequence[SSAValue], shape: Sequence[int]) -> SSAValue:
        """A contiguous row-major view of `source`'s elements from `offset` on, of `sizes`
        (`shape` holds the static ones, a negative size elsewhere): no copy. A view of a view views
        the first one's source. lower-views later makes its accesses one-dimensional."""
        cast = source.owner
        if isinstance(cast, memref.ReinterpretCastOp):
            source, offset = cast.source, self.add(cast.offsets[0], offset)
        strides: list[SSAValue] = [self.index(1)]
        for size in reversed(sizes[1:]):
            strides.insert(0, self.mul(strides[0], size))
        assert isinstance(source.type, MemRefType)
        result = MemRefType(source.type.element_type, [d if d >= 0 else DYNAMIC_INDEX for d in shape])
        mixed: list[SSAValue | int] = [size if static < 0 else static for size, static in zip(sizes, shape)]
        return self.insert(memref.ReinterpretCastOp.from_dynamic(source, [offset], mixed, list(strides), result))

    def min(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.insert(arith.MinUIOp(a, b))

    def add(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.insert(arith.AddiOp(a, b))

    def offset(self, base: SSAValue, by: int) -> SSAValue:
        """base + by; base itself for 0, so that an unrolled step's first part emits no addition."""
        return self.add(base, self.index(by)) if by else base

    def loop(
        self,
        lb: SSAValue,
        ub: SSAValue,
        step: SSAValue,
        body: Callable[[LoopBuilder, SSAValue, Sequence[SSAValue]], Sequence[SSAValue]],
        iter_args: Sequence[SSAValue] = (),
        name: str = "i",
    ) -> Sequence[SSAValue]:
        """scf.for lb..ub by step; `body(builder, iv, iter_args)` returns the yielded values."""
        block = Block(arg_types=[IndexType(), *(a.type for a in iter_args)])
        block.args[0].name_hint = name
        inner = LoopBuilder(Builder(InsertPoint.at_end(block)))
        yielded = body(inner, block.args[0], block.args[1:])
        inner.b.insert(scf.YieldOp(*yielded))
        op = scf.ForOp(lb, ub, step, iter_args, Region(block))
        self.b.insert(op)
        return op.results

    def if_(self, cond: SSAValue, then: Callable[[LoopBuilder], Sequence[SSAValue]],
            otherwise: Sequence[SSAValue]) -> Sequence[SSAValue]:  # fmt: skip
        """scf.if: `then(builder)`'s values when cond holds, else `otherwise` (work to skip)."""
        then_block, else_block = Block(), Block()
        inner = LoopBuilder(Builder(InsertPoint.at_end(then_block)))
        inner.b.insert(scf.YieldOp(*then(inner)))
        Builder(InsertPoint.at_end(else_block)).insert(scf.YieldOp(*otherwise))
        op = scf.IfOp(cond, [v.type for v in otherwise], Region(then_block), Region(else_block))
        self.b.insert(op)
        return op.results

    def branch(self, cond: SSAValue, then: Callable[[LoopBuilder], None],
               orelse: Callable[[LoopBuilder], None]) -> None:  # fmt: skip
        """scf.if with an else, neither yielding values: `then` where cond holds, else `orelse`."""
        blocks = Block(), Block()
        for block, body in zip(blocks, (then, orelse)):
            inner = LoopBuilder(Builder(InsertPoint.at_end(block)))
            body(inner)
            inner.b.insert(scf.YieldOp())
        self.b.insert(scf.IfOp(cond, [], Region(blocks[0]), Region(blocks[1])))

    def nest(self, bounds: Sequence[SSAValue], body: Callable[[LoopBuilder, list[SSAValue]], None],
             names: str = "ijklmn") -> None:  # fmt: skip
        """A perfect nest 0..bound by 1 over each bound; `body` gets the induction variables."""

        def level(b: LoopBuilder, ivs: list[SSAValue]) -> None:
            if len(ivs) == len(bounds):
                body(b, ivs)
                return

            def step(inner: LoopBuilder, iv: SSAValue, _: Sequence[SSAValue]) -> Sequence[SSAValue]:
                level(inner, [*ivs, iv])
                return ()

            b.loop(b.index(0), bounds[len(ivs)], b.index(1), step, name=names[len(ivs) % len(names)])

        level(self, [])

    def load(self, buf: SSAValue, indices: Sequence[SSAValue]) -> SSAValue:
        """An element, in its compute_type (a bf16/f16 element widened to f32)."""
        value = self.insert(memref.LoadOp.get(buf, indices))
        return self.insert(arith.ExtFOp(value, f32)) if value.type in tdsl.HALF_FLOATS else value

    def vload(self, buf: SSAValue, indices: Sequence[SSAValue], lanes: int) -> SSAValue:
        """`lanes` consecutive elements as a vector of their compute_type (bf16/f16 widened to f32)."""
        element = element_type(buf)
        value = self.insert(vector.LoadOp(buf, indices, VectorType(element, [lanes])))
        return self.insert(arith.ExtFOp(value, VectorType(f32, [lanes]))) if element in tdsl.HALF_FLOATS else value

    def dword(self, buf: SSAValue, indices: Sequence[SSAValue]) -> SSAValue:
        """The 4 bytes from buf[indices] on (4 i8, 2 bf16) as one i32: the operand that the
        outer-product panels' steps broadcast (PairKernel's bf16 pair, PanelKernel's bytes)."""
        element = element_type(buf)
        word = self.insert(vector.LoadOp(buf, indices, VectorType(element, [32 // element.bitwidth])))  # type: ignore[attr-defined]
        return self.insert(vector.ExtractOp(self.insert(vector.BitcastOp(word, VectorType(i32, [1]))), [0], i32))

    def vstore(self, value: SSAValue, buf: SSAValue, indices: Sequence[SSAValue]) -> None:
        """A vector of the buffer's compute_type stored at `indices` (f32 rounded to bf16/f16)."""
        element = element_type(buf)
        if element in tdsl.HALF_FLOATS:
            assert isinstance(value.type, VectorType)
            value = self.insert(arith.TruncFOp(value, VectorType(element, value.type.get_shape())))
        self.b.insert(vector.StoreOp(value, buf, indices))

    def load_index(self, buf: SSAValue, indices: Sequence[SSAValue], unsigned: bool = False) -> SSAValue:
        """An integer element as an index: row pointers, column indices (unsigned ones zero-extended)."""
        value = self.load(buf, indices)
        assert isinstance(value.type, IntegerType)
        if unsigned and value.type.width.data < 64:
            value = self.insert(arith.ExtUIOp(value, i64))
        return self.insert(arith.IndexCastOp(value, IndexType()))

    def mul(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.insert(arith.MuliOp(a, b))

    def div(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.insert(arith.DivUIOp(a, b))

    def rem(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.insert(arith.RemUIOp(a, b))

    def store(self, value: SSAValue, buf: SSAValue, indices: Sequence[SSAValue]) -> None:
        """A value of the buffer's compute_type stored at `indices` (f32 rounded to bf16/f16)."""
        element = element_type(buf)
        if element in tdsl.HALF_FLOATS and value.type != element:
            value = self.insert(arith.TruncFOp(value, element))
        self.b.insert(memref.StoreOp.get(value, buf, indices))

    def broadcast_load(self, buf: SSAValue, out_ivs: Sequence[SSAValue]) -> SSAValue:
        """Load the element of `buf` that numpy broadcasting pairs with `out_ivs`."""
        return self.load(buf, self.broadcast_indices(buf, out_ivs))

    def broadcast_indices(self, buf: SSAValue, out_ivs: Sequence[SSAValue]) -> list[SSAValue]:
        """The indices of the element of `buf` that numpy broadcasting pairs with `out_ivs`."""
        assert isinstance(buf.type, MemRefType)
        shape = buf.type.get_shape()
        ivs = out_ivs[len(out_ivs) - len(shape) :]
        zero = self.index(0) if 1 in shape else None
        return [zero if size == 1 else iv for size, iv in zip(shape, ivs)]  # type: ignore[misc]

    # --- vectors along a contiguous (innermost) axis
    def splat_value(self, value: SSAValue, width: int) -> SSAValue:
        """A scalar in every lane of a vector."""
        return self.insert(vector.BroadcastOp(value, VectorType(value.type, [width])))

    def like(self, x: SSAValue, value: float) -> SSAValue:
        """A constant of x's type: a scalar, or `value` in every lane of x's vector type.
        The elementwise bodies below build their constants with it, so that the same
        body computes one element or a vector of them."""
        return self.constant(x.type, value)

    def constant(self, type: Attribute, value: int | float) -> SSAValue:
        """`value` as a scalar of `type`, or in every lane of a vector `type`."""
        if isinstance(type, VectorType):
            return self.splat(type, value)
        if isinstance(type, IntegerType):
            return self.insert(arith.ConstantOp(IntegerAttr(int(value), type)))
        assert isa(type, AnyFloat), type
        return self.insert(arith.ConstantOp(FloatAttr(value, type)))

    def reduce_lanes(self, v: SSAValue, combine: str) -> SSAValue:
        """The lanes of v summed ("sum", in any order: fast-math flags on floats) or their
        maximum ("max", floats). xDSL's constructor would give the result the vector's type."""
        flag = vector.CombiningKindFlag.ADD if combine == "sum" else vector.CombiningKindFlag.MAXIMUMF
        assert isinstance(v.type, VectorType)
        properties: dict[str, Attribute] = {"kind": vector.CombiningKindAttr(flag)}
        if not isinstance(v.type.element_type, IntegerType):
            properties["fastmath"] = FAST
        return self.insert(vector.ReductionOp.create(operands=[v], result_types=[v.type.element_type],
                                                     properties=properties))  # fmt: skip

    # --- arithmetic on floats or integers
    def widen(self, value: SSAValue, type: Attribute) -> SSAValue:
        """An integer sign-extended to the wider integer `type`; anything else unchanged."""
        src = value.type
        if isinstance(src, IntegerType) and isinstance(type, IntegerType) and src.width.data < type.width.data:
            return self.insert(arith.ExtSIOp(value, type))
        return value

    def mul_add(self, acc: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        """acc + a * b, the step of every dot product. On floats with fast-math (so
        that LLVM may reassociate and vectorise); on integers a and b are
        sign-extended to the accumulator's type (i8 to i32) and multiplied and added
        exactly there, as the integer quantized paths and i8 products do."""
        if isinstance(acc.type, IntegerType):
            prod = self.insert(arith.MuliOp(self.widen(a, acc.type), self.widen(b, acc.type)))
            return self.insert(arith.AddiOp(acc, prod))
        return self.fadd(acc, self.fmul(a, b, fast=True), fast=True)

    # --- float arithmetic
    def fadd(self, a: SSAValue, b: SSAValue, fast: bool = False) -> SSAValue:
        return self.insert(arith.AddfOp(a, b, FAST if fast else None))

    def fmul(self, a: SSAValue, b: SSAValue, fast: bool = False) -> SSAValue:
        return self.insert(arith.MulfOp(a, b, FAST if fast else None))

    def fdiv(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.insert(arith.DivfOp(a, b))

    def fmax(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.insert(arith.MaximumfOp(a, b))

    def exp(self, a: SSAValue) -> SSAValue:
        """e^a: libm's expf on a scalar; on a vector the polynomial of vector_exp (LLVM
        would call expf once per lane)."""
        if isinstance(a.type, VectorType):
            return vector_exp(self, a)
        return self.insert(mathd.ExpOp(a))


EXP_LOW = -126.4 * math.log(2.0)
"""vector_exp's arguments are clamped here from below: n = -126 builds a zero scale, so
results below about 2^-125 (arguments below about -86.6) are flushed to 0."""
EXP_HIGH = 88.75
"""... and here from above, past ln(largest f32) = 88.7228: n = 128 overflows to +inf."""
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
"""Cephes' expf: e^r ~ 1 + r + r^2 (c5 + c4 r + ... + c0 r^5) for |r| <= ln(2)/2 (about 1 ulp)."""

_MAGIC, _MAGIC_BITS = 12582912.0, 0x4B400000  # 1.5 * 2^23 and its bits


def vector_exp(b: LoopBuilder, x: SSAValue) -> SSAValue:
    """e^x on f32 lanes (or a scalar): x = n ln2 + r with n = round(x / ln2) (Cody-Waite,
    ln2 in two parts), a polynomial for e^r, and 2^n built in the exponent bits (as
    2^(n-1) * 2, so that n = 128 still reaches the largest finite results). The clamps
    (EXP_LOW, EXP_HIGH) keep the exponent field in range, give 0 for -inf and +inf for
    +inf, and keep a NaN (its polynomial is NaN). No compare or select: xDSL's llvm
    dialect has no vector fcmp."""
    xc = b.insert(arith.MinimumfOp(b.insert(arith.MaximumfOp(x, b.like(x, EXP_LOW))), b.like(x, EXP_HIGH)))
    n = b.insert(mathd.RoundEvenOp(b.fmul(xc, b.like(x, 1.0 / math.log(2.0)))))
    r = b.insert(arith.SubfOp(xc, b.fmul(n, b.like(x, 0.693359375))))
    r = b.insert(arith.SubfOp(r, b.fmul(n, b.like(x, -2.12194440e-4))))
    p = b.like(x, _EXP_POLY[0])
    for c in _EXP_POLY[1:]:
        p = b.insert(mathd.FmaOp(p, r, b.like(x, c)))
    p = b.fadd(b.fadd(b.fmul(b.fmul(p, r), r), r), b.like(x, 1.0))
    # n's integer value from the bits of n + 1.5 * 2^23 (whose low mantissa bits hold
    # it): a float-to-int conversion would be saturating, which x86 does lane by lane.
    ints = VectorType(i32, x.type.get_shape()) if isinstance(x.type, VectorType) else i32
    bits = b.insert(arith.BitcastOp(b.fadd(n, b.like(x, _MAGIC)), ints))
    k = b.insert(arith.SubiOp(bits, b.constant(ints, _MAGIC_BITS - 126)))
    exponent = b.insert(arith.ShLIOp(k, b.constant(ints, 23)))
    half_scale = b.insert(arith.BitcastOp(exponent, x.type))
    return b.fmul(b.fmul(p, half_scale), b.like(x, 2.0))


def _sigmoid(b: LoopBuilder, x: SSAValue) -> SSAValue:
    one = b.like(x, 1.0)
    return b.fdiv(one, b.fadd(one, b.exp(b.insert(arith.NegfOp(x)))))


def _gelu(b: LoopBuilder, x: SSAValue) -> SSAValue:
    erf = b.insert(mathd.ErfOp(b.fmul(x, b.f32(1.0 / math.sqrt(2.0)))))
    return b.fmul(b.fmul(x, b.f32(0.5)), b.fadd(erf, b.f32(1.0)))


SCALAR: dict[type[tdsl.UnaryOp], Scalar] = {
    tdsl.ReluOp: lambda b, x: b.fmax(x, b.like(x, 0.0)),
    tdsl.GeluOp: _gelu,
    tdsl.SiluOp: lambda b, x: b.fmul(x, _sigmoid(b, x)),
    tdsl.SigmoidOp: _sigmoid,
    tdsl.TanhOp: lambda b, x: b.insert(mathd.TanhOp(x)),
    tdsl.ExpOp: lambda b, x: b.exp(x),
    tdsl.NegOp: lambda b, x: b.insert(arith.NegfOp(x)),
    tdsl.AbsOp: lambda b, x: b.insert(mathd.AbsFOp(x)),
    tdsl.SqrtOp: lambda b, x: b.insert(mathd.SqrtOp(x)),
    tdsl.RsqrtOp: lambda b, x: b.fdiv(b.like(x, 1.0), b.insert(mathd.SqrtOp(x))),
}
VECTOR_UNARY = frozenset(SCALAR) - {tdsl.GeluOp, tdsl.TanhOp}
"""The bodies of SCALAR that also compute on f32 vectors (erf and tanh are libm calls)."""
BINARY: dict[type[tdsl.ElementwiseBinaryOp], type[arith.FloatingPointLikeBinaryOperation]] = {
    tdsl.AddOp: arith.AddfOp,
    tdsl.SubOp: arith.SubfOp,
    tdsl.MulOp: arith.MulfOp,
    tdsl.DivOp: arith.DivfOp,
}


def _ineg(b: LoopBuilder, x: SSAValue) -> SSAValue:
    return b.insert(arith.SubiOp(b.zero(x.type), x))


# The ops that are defined on integers (ON_INTEGERS in the tdsl dialect), wrapping
# around like numpy's integer arithmetic: abs and neg of the minimum are the minimum.
INTEGER_SCALAR: dict[type[tdsl.UnaryOp], Scalar] = {
    tdsl.ReluOp: lambda b, x: b.insert(arith.MaxSIOp(x, b.zero(x.type))),
    tdsl.NegOp: _ineg,
    tdsl.AbsOp: lambda b, x: b.insert(arith.MaxSIOp(x, _ineg(b, x))),
}
INTEGER_BINARY: dict[type[tdsl.ElementwiseBinaryOp], type[arith.SignlessIntegerBinaryOperation]] = {
    tdsl.AddOp: arith.AddiOp,
    tdsl.SubOp: arith.SubiOp,
    tdsl.MulOp: arith.MuliOp,
}


def unary(b: LoopBuilder, op: type[tdsl.UnaryOp], x: SSAValue) -> SSAValue:
    """The scalar body of elementwise function `op` on x, for x's element type."""
    return (INTEGER_SCALAR if isinstance(x.type, IntegerType) else SCALAR)[op](b, x)


def binary(b: LoopBuilder, op: type[tdsl.ElementwiseBinaryOp], x: SSAValue, y: SSAValue) -> SSAValue:
    """x op y elementwise, for their element type."""
    if issubclass(op, tdsl.CompareOp):
        return compare(b, op, x, y)
    return b.insert((INTEGER_BINARY if isinstance(x.type, IntegerType) else BINARY)[op](x, y))


def compare(b: LoopBuilder, op: type[tdsl.CompareOp], x: SSAValue, y: SSAValue) -> SSAValue:
    """x op y as an i1: cmpf with the op's (ordered, or for != unordered) predicate, on
    integers cmpi with its signed form."""
    if isinstance(x.type, IntegerType):
        predicate = {"oeq": "eq", "une": "ne"}.get(op.PREDICATE, "s" + op.PREDICATE[1:])
        return b.insert(arith.CmpiOp(x, y, predicate))
    return b.insert(arith.CmpfOp(x, y, op.PREDICATE))


def convert(b: LoopBuilder, value: SSAValue, to: Attribute) -> SSAValue:
    """`value` (of a compute_type) as a value of compute_type(to), as tdsl.cast defines it:
    float to integer rounds to nearest even and saturates (NaN gives 0), integer to integer
    saturates, integer to float converts (rounding to nearest even), float to float is the
    store's rounding (f32 is the compute type of every float). A bool (i1) converts as
    0 or 1 (zero-extended: i1's sign bit is its only bit); to bool is x != 0 (unordered on
    floats, so NaN gives true as in numpy)."""
    to = compute_type(to)
    if to == i1 and value.type != i1:
        return compare(b, tdsl.NeOp, value, b.zero(value.type))
    if value.type == i1 and to != i1:
        if isinstance(to, IntegerType):
            return b.insert(arith.ExtUIOp(value, to))
        assert isa(to, AnyFloat), to
        return b.insert(arith.UIToFPOp(value, to))
    if isinstance(value.type, IntegerType) and isinstance(to, IntegerType):
        if value.type.width.data <= to.width.data:
            return b.widen(value, to)
        lo, hi = (b.insert(arith.ConstantOp(IntegerAttr(v, value.type))) for v in _int_range(to))
        return b.insert(arith.TruncIOp(b.insert(arith.MinSIOp(b.insert(arith.MaxSIOp(value, lo)), hi)), to))
    if isinstance(value.type, IntegerType):
        assert isa(to, AnyFloat), to
        return b.insert(arith.SIToFPOp(value, to))
    if isinstance(to, IntegerType):  # fptosi saturates (llvm.fptosi.sat: NaN gives 0)
        return b.insert(arith.FPToSIOp(b.insert(mathd.RoundEvenOp(value)), to))
    return value


def _int_range(t: IntegerType) -> tuple[int, int]:
    bits = t.width.data
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
