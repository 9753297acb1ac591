"""N:M structured sparsity: the row encoding (shared with hybrid's nm tiles) and the nm format.

Loops below run over the M positions of a group, never over elements: numpy reductions
along a short last axis are several times slower than M whole-array operations.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from stoicc_py.dialects.layout import StorageAttr
from stoicc_py.dialects.sparse import NMAttr
from stoicc_py.packing.common import Array, Format, Options

if TYPE_CHECKING:
    from stoicc_py.packing.tensor import PackedTensor


@dataclass(frozen=True)
class NMCode:
    """The N:M encoding of rows of `groups * m` dense elements, read from a storage's params
    (which `NMAttr.row_encoding` derives)."""

    n: int
    m: int
    index_bits: int
    per_word: int
    slots: int
    words: int

    @classmethod
    def of(cls, storage: StorageAttr, prefix: str = "") -> NMCode:
        return cls(**{f.name: storage.param(prefix + f.name) for f in fields(cls)})

    @property
    def groups(self) -> int:
        return self.slots // self.n

    def _counts(self, nonzero: Array) -> Array:
        """Non-zeros per group of a [groups, m] mask."""
        counts = np.zeros(nonzero.shape[0], np.int32)
        for p in range(self.m):
            counts += nonzero[:, p]
        return counts

    def counts(self, x: Array) -> Array:
        """Non-zeros per group [rows, groups] of rows x."""
        return self._counts(x.reshape(-1, self.m) != 0).reshape(x.shape[0], self.groups)

    def first_violation(self, x: Array) -> tuple[int, int, int, int] | None:
        """(row, group, its non-zeros, violating groups) of x's first group with more than N non-zeros."""
        counts = self.counts(x)
        over = counts > self.n
        if not over.any():
            return None
        row, group = divmod(int(np.argmax(over)), self.groups)
        return row, group, int(counts[row, group]), int(np.count_nonzero(over))

    def prune(self, x: Array) -> Array:
        """x with all but the N largest |values| of each group zeroed; ties keep the lower position."""
        grouped = x.reshape(-1, self.m)
        mag = np.abs(grouped.astype(np.float32, copy=False))  # |-128| of an int8 w is 128
        keep = np.empty(grouped.shape, bool)
        for i in range(self.m):
            # rank of position i: the positions that beat it, lower positions winning ties
            rank = np.zeros(grouped.shape[0], np.int32)
            for j in range(self.m):
                if j != i:
                    rank += mag[:, j] >= mag[:, i] if j < i else mag[:, j] > mag[:, i]
            keep[:, i] = rank < self.n
        return np.where(keep, grouped, 0).reshape(x.shape)  # a python 0 keeps x's dtype

    def encode(self, x: Array) -> tuple[Array, Array]:
        """Values [rows, slots] and int32 index words [rows, words] of rows x that satisfy N:M."""
        rows, grouped = x.shape[0], x.reshape(-1, self.m)
        nonzero = grouped != 0
        # Pad a group with fewer than N non-zeros with its smallest zero positions.
        missing = self.n - self._counts(nonzero)
        kept, zeros_seen = np.empty_like(nonzero), np.zeros(grouped.shape[0], np.int32)
        for p in range(self.m):
            zeros_seen += ~nonzero[:, p]
            kept[:, p] = nonzero[:, p] | (zeros_seen <= missing)
        flat = np.flatnonzero(kept)  # row-major: slot order, and ascending positions within a group
        values = np.take(grouped, flat).reshape(rows, self.slots)
        # flat % M, as a mask: M is a power of two (and divides 2**32, so the cast keeps it).
        positions = flat.astype(np.uint32) & np.uint32(self.m - 1)
        padded = np.zeros((rows, self.words * self.per_word), np.uint32)
        padded[:, : self.slots] = positions.reshape(rows, self.slots)
        by_word = padded.reshape(rows, self.words, self.per_word)
        words = np.zeros((rows, self.words), np.uint32)
        for k in range(self.per_word):  # LSB first
            words |= by_word[:, :, k] << np.uint32(k * self.index_bits)
        return values, words.view(np.int32)

    def positions(self, words: Array) -> Array:
        """Positions [rows, groups, n] within their groups, from int32 index words [rows, words]."""
        shifts = np.arange(self.per_word, dtype=np.uint32) * np.uint32(self.index_bits)
        slots = (words.view(np.uint32)[..., None] >> shifts) & np.uint32((1 << self.index_bits) - 1)
        slots = slots.reshape(words.shape[0], self.words * self.per_word)[:, : self.slots]
        return slots.astype(np.intp).reshape(words.shape[0], self.groups, self.n)

    def decode(self, values: Array, words: Array) -> Array:
        """The dense rows [rows, groups * m] of encoded rows."""
        rows = values.shape[0]
        dense = np.zeros((rows, self.groups, self.m), values.dtype)
        np.put_along_axis(dense, self.positions(words), values.reshape(rows, self.groups, self.n), axis=-1)
        return dense.reshape(rows, self.groups * self.m)

    def index_error(self, words: Array) -> tuple[int, str] | None:
        """(row, reason) of the first row with malformed index words. An index has log2(M) bits,
        so it is < M by construction; what can go wrong is order, duplicates and stray bits."""
        filled = np.minimum(self.per_word, self.slots - np.arange(self.words) * self.per_word)
        used = ((np.uint64(1) << (filled * self.index_bits).astype(np.uint64)) - np.uint64(1)).astype(np.uint32)
        stray = (words.view(np.uint32) & ~used) != 0
        positions = self.positions(words)
        unordered = (np.diff(positions, axis=-1) <= 0).any(axis=-1)
        bad_rows = np.flatnonzero(stray.any(axis=1) | unordered.any(axis=1))
        if not bad_rows.size:
            return None
        row = int(bad_rows[0])
        if stray[row].any():
            w = int(np.argmax(stray[row]))
            bits = f"{int(words[row, w]) & 0xFFFFFFFF:032b}"
            return row, f"word {w} = 0b{bits} has bits set above its {filled[w]} indices of {self.index_bits} bits"
        group = int(np.argmax(unordered[row]))
        return row, f"group {group} positions {positions[row, group].tolist()} are not distinct and ascending"


def conform(w: Array, layout: NMAttr, code: NMCode, prune: bool) -> Array:
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
    code = NMCode.of(storage)
    values, indices = code.encode(conform(w, layout, code, opts.prune))
    return {"values": values, "indices": indices}


def _unpack(packed: PackedTensor) -> Array:
    return NMCode.of(packed.storage).decode(packed.arrays["values"], packed.arrays["indices"])


def _check(packed: PackedTensor) -> None:
    if error := NMCode.of(packed.storage).index_error(packed.arrays["indices"]):
        raise ValueError(f"indices of row {error[0]}: {error[1]}")


NM = Format(_pack, _unpack, _check)
