"""The `tdsl` dialect: the tensor language's ops, on tensors with layouts.

Every op has two forms, as in MLIR's linalg: on tensors it returns a result; after
bufferization it writes into an `into` memref operand and returns nothing. Result
types are inferred by one function per op (`infer`), used by the verifier, the front
end and the shape-inference pass alike.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, ClassVar

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    IntAttr,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    UnitAttr,
    bf16,
    f16,
    f32,
    i1,
    i8,
    i32,
    i64,
)
from xdsl.ir import Attribute, Dialect, Operation, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    AttrSizedOperandSegments,
    BaseAttr,
    IRDLOperation,
    OptOperand,
    OptOpResult,
    base,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_attr_def,
    opt_operand_def,
    opt_result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import EffectInstance, MemoryEffect, MemoryEffectKind, Pure
from xdsl.utils.exceptions import VerifyException

from stoicc_py import dims
from stoicc_py.dialects.layout import DENSE, Dim, LayoutAttr, PackedType, QuantLayoutAttr, StorageAttr
from stoicc_py.dialects.quant import UniformQuantAttr

DTYPES: dict[str, TypeAttribute] = {"f32": f32, "bf16": bf16, "f16": f16, "i8": i8, "i32": i32, "bool": i1}
"""Element types by name. `bool` is i1 in registers and one byte (0 or 1) in memory."""
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
ACCUMULATOR: dict[TypeAttribute, TypeAttribute] = {i8: i32}
"""The element type of a matrix product of operands of a type, where it is wider:
i8 products accumulate exactly in i32."""
HALF_FLOATS: tuple[TypeAttribute, ...] = (bf16, f16)
"""The 16-bit float dtypes: stored in 16 bits, computed with in f32 registers (a load
widens exactly, a store rounds to nearest even)."""


class ShapeError(VerifyException):
    """Operand shapes that an op cannot combine."""


@irdl_attr_definition
class TensorType(ParametrizedAttribute, TypeAttribute):
    """A tensor value: shape (static sizes or size symbols), element type, layout."""

    name = "tdsl.tensor"

    shape: ArrayAttr[IntAttr | StringAttr]
    element_type: TypeAttribute
    layout: LayoutAttr

    def __init__(self, shape: Sequence[Dim], element_type: TypeAttribute = f32, layout: LayoutAttr = DENSE):
        dims = ArrayAttr(IntAttr(d) if isinstance(d, int) else StringAttr(d) for d in shape)
        super().__init__(dims, element_type, layout)

    @property
    def dims(self) -> tuple[Dim, ...]:
        return tuple(d.data for d in self.shape.data)

    @property
    def rank(self) -> int:
        return len(self.shape.data)

    @property
    def dtype(self) -> str:
        return DTYPE_NAMES[self.element_type]

    @property
    def is_integer(self) -> bool:
        return isinstance(self.element_type, IntegerType)

    @property
    def is_bool(self) -> bool:
        return self.element_type == i1

    def with_dims(self, dims: Sequence[Dim]) -> TensorType:
        """The same element type with `dims` and dense layout: the type of a computed value."""
        return TensorType(dims, self.element_type)

    def with_element(self, element_type: TypeAttribute) -> TensorType:
        """The same dims with `element_type` and dense layout."""
        return TensorType(self.dims, element_type)

    def verify(self) -> None:
        if self.element_type not in DTYPE_NAMES:
            raise VerifyException(f"tdsl.tensor: unsupported element type {self.element_type}")
        for d in self.dims:
            if isinstance(d, int) and d <= 0:
                raise VerifyException(f"tdsl.tensor: dimensions must be positive, got {d}")
        self.layout.verify_for(self.dims, self.dtype)

    def __str__(self) -> str:
        text = f"{self.dtype}[{', '.join(map(str, self.dims))}]"
        return text if self.layout.is_dense else f"{text} @ {self.layout.summary()}"

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        def parse_dim() -> Attribute:
            size = parser.parse_optional_integer(allow_boolean=False, allow_negative=False)
            if size is not None:
                return IntAttr(size)
            expression = parser.parse_optional_str_literal()  # a dim expression, quoted
            return StringAttr(expression if expression is not None else parser.parse_identifier())

        with parser.in_angle_brackets():
            dims = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parse_dim)
            parser.parse_punctuation(",")
            element_type = parser.parse_type()
            layout = parser.parse_attribute() if parser.parse_optional_punctuation(",") else DENSE
        return (ArrayAttr(dims), element_type, layout)

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<[{', '.join(map(_dim_text, self.dims))}], ")
        printer.print_attribute(self.element_type)
        if self.layout != DENSE:
            printer.print_string(", ")
            printer.print_attribute(self.layout)
        printer.print_string(">")


def name_hint(name: str) -> str | None:
    """The SSA name hint of a source name, or None: xDSL drops a `_N` suffix from a hint, so
    a name of `_` and digits alone (`_1`, a valid parameter) would leave an empty hint, which
    xDSL stores and then refuses when a pass copies it to another value."""
    return name if SSAValue.extract_valid_name(name) else None


def _dim_text(d: Dim) -> str:
    """A dim in the IR's text: a size or symbol as it is, a dim expression quoted."""
    return f'"{d}"' if isinstance(d, str) and not dims.is_symbol(d) else str(d)


def broadcast(a: Sequence[Dim], b: Sequence[Dim]) -> tuple[Dim, ...]:
    """numpy broadcasting over static and symbolic dims; symbols broadcast only
    against themselves or a static 1, since their size is not known until call time."""
    out: list[Dim] = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + tuple(a)), reversed((1,) * (len(a) - len(b)) + tuple(b))):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(f"cannot broadcast dimension {x} with {y}")
    return tuple(reversed(out))


def broadcasts_into(dims: Sequence[Dim], into: Sequence[Dim]) -> bool:
    try:
        return broadcast(dims, into) == tuple(into)
    except ShapeError:
        return False


def check_defined_on(what: str, on_integers: bool, a: TensorType) -> None:
    """Raise ShapeError if `what` (an op or activation name) reads an integer tensor
    but is not defined on integers (its result would not be an exact integer), or reads
    a bool tensor (no arithmetic is defined on truth values)."""
    if a.is_bool:
        raise ShapeError(f"{what} is not defined on bool (a truth value; where(c, a, b) selects with one)")
    if a.is_integer and not on_integers:
        raise ShapeError(f"{what} is not defined on {a.dtype} (an integer tensor)")


def _value_type(value: SSAValue) -> TensorType:
    if not isinstance(value.type, TensorType):
        raise VerifyException(f"expected a tdsl.tensor operand, got {value.type}")
    return value.type


_TensorOrMemref = BaseAttr(TensorType) | BaseAttr(MemRefType)
_Weight = _TensorOrMemref | BaseAttr(PackedType)  # a product's operand may be packed (sparse, quantized)


class DestinationEffects(MemoryEffect):
    """Pure on tensors; on buffers, reads the inputs and writes the `into` buffer."""

    @classmethod
    def get_effects(cls, op: Operation) -> AbstractSet[EffectInstance]:
        out = getattr(op, "out", None)
        if out is None:
            return frozenset()
        reads = (EffectInstance(MemoryEffectKind.READ, v) for v in op.operands if v is not out)
        return frozenset((EffectInstance(MemoryEffectKind.WRITE, out), *reads))


class TdslOp(IRDLOperation, ABC):
    """Base of the tensor ops: one inferred result in tensor form, an `into` buffer
    in buffer form."""

    if TYPE_CHECKING:  # every concrete op defines both (IRDL forbids bare annotations here)
        out: OptOperand
        result: OptOpResult[TensorType]

    def tensor_operands(self) -> Sequence[SSAValue]:
        return [o for o in self.operands if o is not self.out]

    @property
    def is_bufferized(self) -> bool:
        return self.out is not None

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        """The result type for these operand types and attributes; raises ShapeError."""
        raise NotImplementedError

    def verify_(self) -> None:
        out, result = self.out, self.result
        if (out is None) == (result is None):
            raise VerifyException(f"'{self.name}' needs exactly one of a result or an 'into' buffer")
        if result is None:
            return
        if any(isinstance(o.type, MemRefType) for o in self.operands):
            raise VerifyException(f"'{self.name}' mixes tensor and memref operands")
        expected = self.infer([_value_type(o) for o in self.tensor_operands()], self.attributes)
        if result.type != expected:
            raise ShapeError(f"'{self.name}' result type {result.type} does not match inferred {expected}")


_UNARY_FORMAT = "$input (`into` $out^)? attr-dict `:` type($input) (`into` type($out)^)? (`->` type($result)^)?"
_BINARY_FORMAT = (
    "$lhs `,` $rhs (`into` $out^)? attr-dict `:` type($lhs) `,` type($rhs) (`into` type($out)^)? (`->` type($result)^)?"
)


class ElementwiseBinaryOp(TdslOp, ABC):
    """`lhs op rhs` elementwise with numpy broadcasting."""

    ON_INTEGERS: ClassVar[bool] = True
    """Whether the op is defined on integer tensors (exactly, wrapping around)."""

    lhs = operand_def(_TensorOrMemref)
    rhs = operand_def(_TensorOrMemref)
    out = opt_operand_def(MemRefType)
    result = opt_result_def(TensorType)
    traits = traits_def(DestinationEffects())
    assembly_format = _BINARY_FORMAT
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        a, b = operand_types
        if a.element_type != b.element_type:
            raise ShapeError(f"operands have different element types: {a} and {b}")
        check_defined_on(cls.name.removeprefix("tdsl."), cls.ON_INTEGERS, a)
        return a.with_dims(broadcast(a.dims, b.dims))


@irdl_op_definition
class AddOp(ElementwiseBinaryOp):
    name = "tdsl.add"


@irdl_op_definition
class SubOp(ElementwiseBinaryOp):
    name = "tdsl.sub"


@irdl_op_definition
class MulOp(ElementwiseBinaryOp):
    name = "tdsl.mul"


@irdl_op_definition
class DivOp(ElementwiseBinaryOp):
    name = "tdsl.div"
    ON_INTEGERS: ClassVar[bool] = False


class OneInputOp(TdslOp, ABC):
    """An op of one tensor: `op %input (into %out)?`."""

    input = operand_def(_TensorOrMemref)
    out = opt_operand_def(MemRefType)
    result = opt_result_def(TensorType)
    traits = traits_def(DestinationEffects())
    assembly_format = _UNARY_FORMAT
    irdl_options = (AttrSizedOperandSegments(as_property=True),)


class UnaryOp(OneInputOp, ABC):
    """An elementwise function of one tensor."""

    ON_INTEGERS: ClassVar[bool] = False
    """Whether the function is defined on integer tensors (maps integers to integers)."""

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        check_defined_on(cls.name.removeprefix("tdsl."), cls.ON_INTEGERS, a)
        return a.with_dims(a.dims)


@irdl_op_definition
class ReluOp(UnaryOp):
    name = "tdsl.relu"
    ON_INTEGERS: ClassVar[bool] = True


@irdl_op_definition
class GeluOp(UnaryOp):
    name = "tdsl.gelu"


@irdl_op_definition
class SiluOp(UnaryOp):
    name = "tdsl.silu"


@irdl_op_definition
class SigmoidOp(UnaryOp):
    name = "tdsl.sigmoid"


@irdl_op_definition
class TanhOp(UnaryOp):
    name = "tdsl.tanh"


@irdl_op_definition
class ExpOp(UnaryOp):
    name = "tdsl.exp"


@irdl_op_definition
class NegOp(UnaryOp):
    name = "tdsl.neg"
    ON_INTEGERS: ClassVar[bool] = True


@irdl_op_definition
class AbsOp(UnaryOp):
    name = "tdsl.abs"
    ON_INTEGERS: ClassVar[bool] = True


@irdl_op_definition
class SqrtOp(UnaryOp):
    name = "tdsl.sqrt"


@irdl_op_definition
class RsqrtOp(UnaryOp):
    """1 / sqrt(x)."""

    name = "tdsl.rsqrt"


UNARY_OPS: dict[str, type[UnaryOp]] = {
    op.name.removeprefix("tdsl."): op
    for op in (ReluOp, GeluOp, SiluOp, SigmoidOp, TanhOp, ExpOp, NegOp, AbsOp, SqrtOp, RsqrtOp)
}
BINARY_OPS: dict[str, type[ElementwiseBinaryOp]] = {"+": AddOp, "-": SubOp, "*": MulOp, "/": DivOp}


@irdl_op_definition
class TransposeOp(OneInputOp):
    """Swap the last two dims (rank >= 2), or with `perm` permute them all: result
    dim i is input dim perm[i]."""

    name = "tdsl.transpose"

    perm = opt_attr_def(DenseArrayBase)

    @property
    def permutation(self) -> tuple[int, ...]:
        """perm, or the swap of the last two axes."""
        if self.perm is not None:
            return tuple(self.perm.get_values())
        t = self.input.type
        rank = len(t.get_shape()) if isinstance(t, MemRefType) else _value_type(self.input).rank
        return (*range(rank - 2), rank - 1, rank - 2)

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        perm = attributes.get("perm")
        if perm is None:
            if a.rank < 2:
                raise ShapeError(f"transpose expects a tensor of rank 2 or more, got {a}")
            return a.with_dims((*a.dims[:-2], a.dims[-1], a.dims[-2]))
        order = tuple(perm.get_values()) if isinstance(perm, DenseArrayBase) else ()
        if sorted(order) != list(range(a.rank)):
            raise ShapeError(f"transpose's permutation {list(order)} is not a permutation of the {a.rank} axes of {a}")
        return a.with_dims([a.dims[i] for i in order])


def dims_attr(values: Sequence[Dim]) -> ArrayAttr[IntAttr | StringAttr]:
    return ArrayAttr(IntAttr(d) if isinstance(d, int) else StringAttr(d) for d in values)


def _dims_of(attr: Attribute | None, what: str) -> tuple[Dim, ...]:
    if not isinstance(attr, ArrayAttr) or not all(isinstance(d, IntAttr | StringAttr) for d in attr.data):
        raise ShapeError(f"missing '{what}' attribute (an array of sizes and dim expressions)")
    return tuple(d.data for d in attr.data)


@irdl_op_definition
class ReshapeOp(OneInputOp):
    """The same elements, row-major, in the shape `shape` (same element count)."""

    name = "tdsl.reshape"

    shape = opt_attr_def(ArrayAttr[IntAttr | StringAttr])

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        shape = _dims_of(attributes.get("shape"), "shape")
        if any(isinstance(d, int) and d <= 0 for d in shape):
            raise ShapeError(f"reshape's sizes must be positive, got {list(shape)}")
        if dims.product(shape) != dims.product(a.dims):
            raise ShapeError(
                f"reshape cannot change the number of elements: {a} has {dims.format_count(dims.product(a.dims))}, "
                f"[{', '.join(map(str, shape))}] has {dims.format_count(dims.product(shape))}"
            )
        return a.with_dims(shape)


@irdl_op_definition
class SliceOp(OneInputOp):
    """`input[starts[0]:stops[0], ...]`: one start and stop per axis (dims, possibly
    expressions); the result dim is stop - start."""

    name = "tdsl.slice"

    starts = opt_attr_def(ArrayAttr[IntAttr | StringAttr])
    stops = opt_attr_def(ArrayAttr[IntAttr | StringAttr])

    @property
    def bounds(self) -> list[tuple[Dim, Dim]]:
        return list(zip(_dims_of(self.starts, "starts"), _dims_of(self.stops, "stops")))

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        starts, stops = _dims_of(attributes.get("starts"), "starts"), _dims_of(attributes.get("stops"), "stops")
        if len(starts) != a.rank or len(stops) != a.rank:
            raise ShapeError(f"slice needs a start and a stop for each of the {a.rank} axes of {a}")
        out: list[Dim] = []
        for axis, (start, stop, size) in enumerate(zip(starts, stops, a.dims)):
            length, room = dims.sub(stop, start), dims.sub(size, stop)
            if (isinstance(start, int) and start < 0) or (isinstance(room, int) and room < 0):
                raise ShapeError(f"slice {start}:{stop} is out of range for axis {axis} of {a} (size {size})")
            if isinstance(length, int) and length <= 0:
                raise ShapeError(f"slice {start}:{stop} of axis {axis} is empty")
            out.append(length)
        return a.with_dims(out)


@irdl_op_definition
class ConcatOp(TdslOp):
    """The inputs joined along `axis`; their other dims must be equal."""

    name = "tdsl.concat"

    inputs = var_operand_def(_TensorOrMemref)
    out = opt_operand_def(MemRefType)
    result = opt_result_def(TensorType)
    axis = opt_attr_def(IntegerAttr)
    traits = traits_def(DestinationEffects())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = (
        "$inputs (`into` $out^)? attr-dict `:` type($inputs) (`into` type($out)^)? (`->` type($result)^)?"
    )

    @property
    def axis_index(self) -> int:
        assert self.axis is not None
        return self.axis.value.data

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        if len(operand_types) < 2:
            raise ShapeError("concat joins two or more tensors")
        first = operand_types[0]
        axis = AxisOp.checked_axis(first, attributes)
        for t in operand_types[1:]:
            if t.element_type != first.element_type or t.rank != first.rank:
                raise ShapeError(f"concat's operands must have one element type and rank: {first} and {t}")
            for i, (x, y) in enumerate(zip(first.dims, t.dims)):
                if i != axis and x != y:
                    raise ShapeError(f"concat along axis {axis}: dimension {i} differs, {x} in {first} and {y} in {t}")
        joined = dims.total(t.dims[axis] for t in operand_types)
        return first.with_dims((*first.dims[:axis], joined, *first.dims[axis + 1 :]))


class AxisOp(OneInputOp, ABC):
    """An op along one axis of its input."""

    axis = opt_attr_def(IntegerAttr)

    def __init__(self, input: SSAValue, axis: int, result_type: Attribute):
        super().__init__(
            operands=[input, None], result_types=[result_type], attributes={"axis": IntegerAttr(axis, i64)}
        )

    @property
    def axis_index(self) -> int:
        assert self.axis is not None
        return self.axis.value.data

    @staticmethod
    def checked_axis(a: TensorType, attributes: dict[str, Attribute]) -> int:
        axis = attributes.get("axis")
        if not isinstance(axis, IntegerAttr):
            raise ShapeError("missing integer 'axis' attribute")
        if not 0 <= axis.value.data < a.rank:
            raise ShapeError(f"axis={axis.value.data} is out of range for {a}")
        return axis.value.data


class ReduceOp(AxisOp, ABC):
    """Reduce one axis away, or with `keepdims` to size 1 (numpy's keepdims=True)."""

    ON_INTEGERS: ClassVar[bool] = True
    """Whether the reduction is defined on integer tensors (exactly, wrapping around)."""

    keepdims = opt_attr_def(UnitAttr)

    @property
    def keeps_dims(self) -> bool:
        return self.keepdims is not None

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        axis = cls.checked_axis(a, attributes)
        check_defined_on(cls.name.removeprefix("tdsl."), cls.ON_INTEGERS, a)
        kept: tuple[Dim, ...] = (1,) if "keepdims" in attributes else ()
        return a.with_dims(a.dims[:axis] + kept + a.dims[axis + 1 :])


@irdl_op_definition
class SumOp(ReduceOp):
    name = "tdsl.sum"


@irdl_op_definition
class MaxOp(ReduceOp):
    name = "tdsl.max"


@irdl_op_definition
class MeanOp(ReduceOp):
    name = "tdsl.mean"
    ON_INTEGERS: ClassVar[bool] = False


@irdl_op_definition
class SoftmaxOp(AxisOp):
    name = "tdsl.softmax"

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        cls.checked_axis(a, attributes)
        check_defined_on("softmax", False, a)
        return a.with_dims(a.dims)


ACTIVATIONS = ("relu", "gelu", "silu", "sigmoid", "tanh")


class ContractionOp(TdslOp, ABC):
    """A matrix product with a fused epilogue: `act(lhs x rhs + bias)`.

    Operands of rank >= 2: the last two dims multiply as matrices, the leading (batch)
    dims broadcast as in numpy; linear's weight is rank 2.

    Operands of one element type; i8 operands give an i32 product (exact integer
    accumulation, see ACCUMULATOR), which a bias must match.

    `tile` (set by the tiling pass) gives the loop tile sizes [tm, tn, tk].
    """

    lhs = operand_def(_Weight)
    rhs = operand_def(_Weight)
    bias = opt_operand_def(_TensorOrMemref)
    out = opt_operand_def(MemRefType)
    result = opt_result_def(TensorType)
    act = opt_attr_def(StringAttr)
    tile = opt_attr_def(DenseArrayBase)
    traits = traits_def(DestinationEffects())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = (
        "$lhs `,` $rhs (`bias` $bias^)? (`into` $out^)? attr-dict `:` type($lhs) `,` type($rhs) "
        "(`bias` type($bias)^)? (`into` type($out)^)? (`->` type($result)^)?"
    )

    RHS_TRANSPOSED: ClassVar[bool]
    """Whether rhs is stored [n, k] (linear's weight) rather than [k, n]."""

    def __init__(self, lhs: SSAValue, rhs: SSAValue, bias: SSAValue | None, result_type: Attribute,
                 attributes: dict[str, Attribute] | None = None):  # fmt: skip
        super().__init__(
            operands=[lhs, rhs, [bias] if bias is not None else [], []],
            result_types=[[result_type]],
            attributes=attributes or {},
        )

    @property
    def activation(self) -> str | None:
        return self.act.data if self.act is not None else None

    @property
    def tile_sizes(self) -> tuple[int, ...] | None:
        return tuple(self.tile.get_values()) if self.tile is not None else None

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        a, b, *bias = operand_types
        name = cls.name.removeprefix("tdsl.")
        if a.rank < 2 or b.rank < 2:
            raise ShapeError(f"{name} expects operands of rank 2 or more, got {a} and {b}")
        if a.element_type != b.element_type:
            raise ShapeError(f"operands have different element types: {a} and {b}")
        (m, k), (kb, n) = a.dims[-2:], (b.dims[-2:][::-1] if cls.RHS_TRANSPOSED else b.dims[-2:])
        if k != kb:
            raise ShapeError(f"reduction dimensions differ: {k} in {a} and {kb} in {b}")
        shape = (*broadcast(a.dims[:-2], b.dims[:-2]), m, n)
        result = TensorType(shape, ACCUMULATOR.get(a.element_type, a.element_type))
        if bias and not broadcasts_into(bias[0].dims, shape):
            raise ShapeError(f"bias {bias[0]} does not broadcast to the product's shape [{', '.join(map(str, shape))}]")
        if bias and bias[0].element_type != result.element_type:
            why = f": {a.dtype} operands accumulate in {result.dtype}" if result.element_type != a.element_type else ""
            raise ShapeError(f"bias {bias[0]} must have the product's element type {result.dtype}{why}")
        act = attributes.get("act")
        if isinstance(act, StringAttr) and act.data in UNARY_OPS:
            check_defined_on(act.data, UNARY_OPS[act.data].ON_INTEGERS, result)
        return result

    def verify_(self) -> None:
        super().verify_()
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise VerifyException(f"unknown activation '{self.activation}' (expected one of {', '.join(ACTIVATIONS)})")
        if self.tile is not None and (len(self.tile_sizes or ()) != 3 or min(self.tile_sizes or (0,)) <= 0):
            raise VerifyException("tile must be three positive sizes [tm, tn, tk]")


@irdl_op_definition
class MatmulOp(ContractionOp):
    """`lhs @ rhs` with lhs [m, k] and rhs [k, n]."""

    name = "tdsl.matmul"
    RHS_TRANSPOSED: ClassVar[bool] = False


@irdl_op_definition
class LinearOp(ContractionOp):
    """`x @ transpose(w) + bias` with w [n, k] as stored by a linear layer (the language's
    linear takes a rank-2 w; a batched w [..., n, k] comes of folding a transpose)."""

    name = "tdsl.linear"
    RHS_TRANSPOSED: ClassVar[bool] = True


_Packed = BaseAttr(PackedType)


@irdl_op_definition
class QuantizeOp(OneInputOp):
    """Round a tensor to the grid of a quantized layout (scales computed from the
    values at run time, e.g. per token for activations). Its value is the dequantized
    grid point; its storage is the layout's codes and scales."""

    name = "tdsl.quantize"

    input = operand_def(_TensorOrMemref)  # redeclared to keep operand order with the new `out`
    out = opt_operand_def(_Packed)
    layout = opt_attr_def(QuantLayoutAttr)
    storage = opt_attr_def(StorageAttr)

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        layout = attributes.get("layout")
        if not isinstance(layout, QuantLayoutAttr):
            raise ShapeError("quantize needs a quantized layout, e.g. quantize(x, int8(per=token))")
        if not a.layout.is_dense:
            raise ShapeError(f"quantize expects a dense tensor, got layout {a.layout.summary()}")
        if isinstance(layout, UniformQuantAttr) and layout.float_offset:  # the run-time quantizer writes zero points
            raise ShapeError(f"quantize computes no float zero at run time: {layout.summary()} is a weight layout "
                             "(pack() it), use symmetric=false")  # fmt: skip
        layout.verify_for(a.dims, a.dtype)
        return TensorType(a.dims, a.element_type, layout)


@irdl_op_definition
class DequantizeOp(OneInputOp):
    """The dense values of a quantized tensor."""

    name = "tdsl.dequantize"

    input = operand_def(_TensorOrMemref | _Packed)
    out = opt_operand_def(MemRefType)  # redeclared to keep operand order

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        if not isinstance(a.layout, QuantLayoutAttr):
            raise ShapeError(f"dequantize expects a quantized tensor, got {a} with layout {a.layout.summary()}")
        return a.with_dims(a.dims)


@irdl_op_definition
class CastOp(OneInputOp):
    """`cast(x, dtype)`: each element converted to `to`. Float to float rounds to
    nearest even; float to integer rounds to nearest even and saturates to the
    integer's range (NaN gives 0); integer to integer saturates; integer to float is
    exact, or rounds to nearest even (i32 to bf16/f16 through f32); a bool is 0 or 1, and
    x to bool is x != 0 (NaN gives true), as numpy's astype."""

    name = "tdsl.cast"

    to = opt_attr_def(TypeAttribute)

    def __init__(self, input: SSAValue, to: TypeAttribute, result_type: Attribute):
        super().__init__(operands=[input, None], result_types=[result_type], attributes={"to": to})

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        to = attributes.get("to")
        if to not in DTYPE_NAMES:
            raise ShapeError(f"cast needs a target dtype (one of {', '.join(DTYPES)}), got {to}")
        assert isinstance(to, TypeAttribute)
        return TensorType(a.dims, to)


@irdl_op_definition
class ConstantOp(IRDLOperation):
    """A number literal as a rank-0 tensor of the dtype it took (docs/language.md,
    "Literals"): a float value (an f32 attribute, which holds every bf16/f16 value
    exactly) for a float dtype, an integer one for an integer dtype."""

    name = "tdsl.constant"

    value = opt_attr_def(base(FloatAttr) | base(IntegerAttr))
    result = opt_result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "attr-dict `:` type($result)"

    def __init__(self, value: float, result_type: TensorType):
        element = result_type.element_type
        attr = IntegerAttr(int(value), element) if isinstance(element, IntegerType) else FloatAttr(value, f32)
        super().__init__(attributes={"value": attr}, result_types=[result_type])

    @property
    def scalar(self) -> float | int:
        assert self.value is not None
        return self.value.value.data

    def verify_(self) -> None:
        if self.value is None or self.result is None:
            raise VerifyException("tdsl.constant needs a value and a result")
        if self.result.type.rank != 0:
            raise VerifyException("tdsl.constant must produce a rank-0 tensor")
        element = self.result.type.element_type
        if element == i1:
            raise VerifyException("tdsl.constant cannot be a bool (a literal is a number)")
        if isinstance(self.value, IntegerAttr) != isinstance(element, IntegerType):
            kind = "an integer" if isinstance(element, IntegerType) else "a float"
            raise VerifyException(f"tdsl.constant of {self.result.type} needs {kind} value")


class CompareOp(ElementwiseBinaryOp, ABC):
    """`lhs < rhs` etc. elementwise with numpy broadcasting: a bool tensor. On floats a
    comparison with NaN is false, except `!=`, as in numpy and IEEE 754."""

    PREDICATE: ClassVar[str]
    """The arith.cmpf predicate (ordered, except `!=` unordered); cmpi takes its signed form."""

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        a, b = operand_types
        if a.element_type != b.element_type:
            raise ShapeError(f"cannot compare tensors of different element types: {a} and {b}")
        check_defined_on(f"comparison '{cls.name.removeprefix('tdsl.')}'", True, a)
        return TensorType(broadcast(a.dims, b.dims), i1)


@irdl_op_definition
class LtOp(CompareOp):
    name = "tdsl.lt"
    PREDICATE: ClassVar[str] = "olt"


@irdl_op_definition
class LeOp(CompareOp):
    name = "tdsl.le"
    PREDICATE: ClassVar[str] = "ole"


@irdl_op_definition
class GtOp(CompareOp):
    name = "tdsl.gt"
    PREDICATE: ClassVar[str] = "ogt"


@irdl_op_definition
class GeOp(CompareOp):
    name = "tdsl.ge"
    PREDICATE: ClassVar[str] = "oge"


@irdl_op_definition
class EqOp(CompareOp):
    name = "tdsl.eq"
    PREDICATE: ClassVar[str] = "oeq"


@irdl_op_definition
class NeOp(CompareOp):
    name = "tdsl.ne"
    PREDICATE: ClassVar[str] = "une"


COMPARISONS: dict[str, type[CompareOp]] = {"<": LtOp, "<=": LeOp, ">": GtOp, ">=": GeOp, "==": EqOp, "!=": NeOp}


@irdl_op_definition
class WhereOp(TdslOp):
    """`where(cond, lhs, rhs)`: lhs where cond holds, else rhs; all three broadcast."""

    name = "tdsl.where"

    cond = operand_def(_TensorOrMemref)
    lhs = operand_def(_TensorOrMemref)
    rhs = operand_def(_TensorOrMemref)
    out = opt_operand_def(MemRefType)
    result = opt_result_def(TensorType)
    traits = traits_def(DestinationEffects())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = (
        "$cond `,` $lhs `,` $rhs (`into` $out^)? attr-dict `:` type($cond) `,` type($lhs) `,` type($rhs) "
        "(`into` type($out)^)? (`->` type($result)^)?"
    )

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        c, a, b = operand_types
        if not c.is_bool:
            raise ShapeError(f"where() needs a bool condition (e.g. a comparison), got {c}")
        if a.element_type != b.element_type:
            raise ShapeError(f"where() chooses between values of one element type, got {a} and {b}")
        return a.with_dims(broadcast(c.dims, broadcast(a.dims, b.dims)))


@irdl_op_definition
class IotaOp(TdslOp):
    """An i32 tensor of `shape` whose every element is its index along `axis`."""

    name = "tdsl.iota"

    shape = opt_attr_def(ArrayAttr[IntAttr | StringAttr])
    axis = opt_attr_def(IntegerAttr)
    out = opt_operand_def(MemRefType)
    result = opt_result_def(TensorType)
    traits = traits_def(DestinationEffects())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = "(`into` $out^)? attr-dict `:` (`into` type($out)^)? (`->` type($result)^)?"

    @property
    def axis_index(self) -> int:
        assert self.axis is not None
        return self.axis.value.data

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        shape = attributes.get("shape")
        if not isinstance(shape, ArrayAttr):
            raise ShapeError("iota needs a 'shape' attribute")
        result = TensorType([d.data for d in shape.data], i32)
        AxisOp.checked_axis(result, attributes)
        return result


@irdl_op_definition
class DimOp(AxisOp):
    """The size of one axis of a tensor as a rank-0 i32 tensor: a size symbol used as a value."""

    name = "tdsl.dim"

    @classmethod
    def infer(cls, operand_types: Sequence[TensorType], attributes: dict[str, Attribute]) -> TensorType:
        (a,) = operand_types
        cls.checked_axis(a, attributes)
        return TensorType([], i32)


Tdsl = Dialect(
    "tdsl",
    [
        AddOp, SubOp, MulOp, DivOp,
        ReluOp, GeluOp, SiluOp, SigmoidOp, TanhOp, ExpOp, NegOp, AbsOp, SqrtOp, RsqrtOp,
        TransposeOp, ReshapeOp, SliceOp, ConcatOp, SumOp, MaxOp, MeanOp, SoftmaxOp,
        LtOp, LeOp, GtOp, GeOp, EqOp, NeOp, WhereOp, IotaOp, DimOp, MatmulOp, LinearOp, ConstantOp, QuantizeOp,
        DequantizeOp, CastOp,
    ],
    [TensorType],
)  # fmt: skip
