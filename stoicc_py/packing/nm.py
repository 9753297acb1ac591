"""The nm format's packer: w made to satisfy N:M (pruned, or checked), then NMCodec's buffers."""

from __future__ import annotations

from stoicc_py.codec.nm import NMCodec
from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.sparse import NMAttr
from stoicc_py.packing.common import Array, Format, Options


def conform(w: Array, layout: NMAttr, code: NMCodec, prune: bool) -> Array:
    """w pruned to N:M when `prune`, else w itself if it satisfies N:M, else a ValueError naming
    its first violating group."""
    if prune:
        return code.prune(w)
    if violation := code.first_violation(w):
        row, group, count, total = violation
        first, last = group * code.m, group * code.m + code.m - 1
        raise ValueError(
            f"w violates {layout.summary()} at row {row}, group {group} (columns {first}..{last}): "
            f"{count} non-zeros, at most {code.n} ({total} groups violate it; prune='magnitude' prunes them)"
        )
    return w


def _pack(w: Array, layout: NMAttr, storage: StorageAttr, opts: Options) -> dict[str, Array]:
    code = layout.codec(w.shape)
    return code.encode(conform(w, layout, code, opts.prune))


NM = Format(_pack)
