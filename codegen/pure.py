"""Which ops only compute a value, for the passes that copy or merge them."""

from xdsl.dialects import ptr
from xdsl.ir import Operation
from xdsl.traits import is_side_effect_free


def computes_only(op: Operation) -> bool:
    """Whether `op` may be computed again elsewhere, or replaced by an equal op that
    dominates it: no regions and no effects. xDSL gives pointer arithmetic no effect
    traits, but it reads nothing."""
    return not op.regions and (is_side_effect_free(op) or isinstance(op, ptr.PtrAddOp | ptr.TypeOffsetOp))
