"""Missed-optimisation remarks, as clang's `-Rpass-missed`: which ops run as generic
scalar loop nests, and why.

A vectoriser that declines an op of its domain (a linear whose weight it could
decode, an elementwise op of its kind) records why on the op (`decline`, a
discardable `stoicc.missed` attribute); tdsl-lower-to-loops reports each op it lowers
to a scalar nest with those reasons (`report`). Remarks are log records of the
`stoicc_py.remarks` logger at INFO, with the op's source place in the record's
`remark` attribute; `stoicc compile --remarks` prints them as `FILE:LINE:COL: remark: ...`.
"""

from __future__ import annotations

import logging

from xdsl.dialects.builtin import ArrayAttr, StringAttr
from xdsl.ir import Attribute, Operation

from stoicc_py.diagnostics import SourceLoc
from stoicc_py.dialects.layout import PackedType

MISSED = "stoicc.missed"
REMARK = "remark"
log = logging.getLogger("stoicc_py.remarks")


def decline(op: Operation, why: str) -> None:
    """Record on `op` why a vector kernel did not take it (a pass's name and the reason)."""
    seen = op.attributes.get(MISSED)
    reasons = list(seen.data) if isinstance(seen, ArrayAttr) else []
    if StringAttr(why) not in reasons:
        op.attributes[MISSED] = ArrayAttr([*reasons, StringAttr(why)])


def report(op: Operation) -> None:
    """A remark that `op` runs as a scalar loop nest, with the reasons recorded on it."""
    if not log.isEnabledFor(logging.INFO):
        return
    seen = op.attributes.get(MISSED)
    reasons = [r.data for r in seen.data if isinstance(r, StringAttr)] if isinstance(seen, ArrayAttr) else []
    name = op.name.removeprefix("tdsl.")
    layouts = [str(v.type.layout) for v in op.operands if isinstance(v.type, PackedType)]
    missing = f"no vector kernel reads {' or '.join(layouts)}" if layouts else f"no vector kernel handles {name}"
    why = "; ".join(reasons) if reasons else missing
    message = f"{name}({', '.join(_described(v.type) for v in op.operands)}) runs as a scalar loop nest: {why}"
    log.info(message, extra={REMARK: (SourceLoc.from_attr(op.location), message)})


def remark(loc: SourceLoc | None, message: str) -> None:
    """A remark at `loc` (a target's choice for a kernel, e.g. the GPU's generic SIMT path)."""
    log.info(message, extra={REMARK: (loc, message)})


def _described(typ: Attribute) -> str:
    """A packed operand as its dims and layout (not its storage), others as printed."""
    if isinstance(typ, PackedType):
        dims = ", ".join("?" if d < 0 else str(d) for d in typ.dims)
        return f"[{dims}] @ {typ.layout}"
    return str(typ)


def format_remark(record: logging.LogRecord) -> str:
    """`FILE:LINE:COL: remark: message` (or `remark: message` where the op has no place)."""
    loc, message = getattr(record, REMARK)
    return f"{loc.file}:{loc.line}:{loc.col}: remark: {message}" if loc is not None else f"remark: {message}"


def is_remark(record: logging.LogRecord) -> bool:
    return hasattr(record, REMARK)
