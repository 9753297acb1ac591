"""Resource limits: sizes the compiler and the runtime refuse before allocating.

A tensor of more than MAX_ELEMENTS elements is refused where it first appears: a
type in the source (CompileError at its location), a call whose arguments bind a
size symbol so large that a result would exceed it, an argument or a pack of such
a shape (ValueError). The limit (2^32 elements, 16 GiB of f32) is far above any
kernel this compiler is for, and keeps every element offset well inside int64.

A program is refused, with a located CompileError, where it passes one of the
front end's limits, which bound its time and memory: MAX_SOURCE_CHARS characters
of source (checked before lexing), MAX_NESTING brackets open at once (checked
before parsing; the syntax tree of an expression, however long, is then walked
without recursion), MAX_OPERATIONS operations in a file (compile time grows linearly
with a kernel's length; the limit bounds it at a few minutes). Each is far above any
real kernel.

Plain Python, without xDSL or numpy: the front end, the runtime and the packer
all import it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MAX_ELEMENTS = 2**32
MAX_SOURCE_CHARS = 256 * 1024
MAX_NESTING = 100
MAX_OPERATIONS = 4096


def too_large(shape: Iterable[int]) -> str | None:
    """Why a tensor of `shape` is refused, or None if its size is within the limit."""
    dims = list(shape)
    if any(d > MAX_ELEMENTS for d in dims):  # before the product, which may be huge
        return f"a dimension of {max(dims)} is larger than the limit of 2^32 elements per tensor"
    elements = math.prod(dims)
    if elements > MAX_ELEMENTS:
        return f"{elements} elements is more than the limit of 2^32 per tensor"
    return None


def check_size(shape: Iterable[int], what: str) -> None:
    """Raise ValueError naming `what` if a tensor of `shape` exceeds the limit."""
    reason = too_large(shape)
    if reason is not None:
        raise ValueError(f"{what}: {reason}")
