"""The N:M codec: the one definition of an N:M row's slots and index words (docs/formats.md).

A row of `width` dense elements is `width / M` groups of M; each group stores N slots
(its non-zeros in ascending position, padded with its lowest zero positions). Slot s
has a value and a position in its group of `index_bits = log2(M)` bits; positions
are packed LSB-first, `per_word` to an INDEX_WORD_BITS-bit word, never straddling a
word. The nm format and hybrid's nm tiles both store rows in this code.

Loops below run over the M positions of a group, never over elements: numpy reductions
along a short last axis are several times slower than M whole-array operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stoicc_py.codec import Array, Codec, cut_leading

INDEX_WORD_BITS = 32
"""N:M positions are packed into 32-bit (int32 buffer) words."""
INDEX_WORD_BYTES = INDEX_WORD_BITS // 8


@dataclass(frozen=True)
class NMCodec(Codec):
    """N:M rows of `width` dense elements (width a multiple of m)."""

    n: int
    m: int
    width: int

    @property
    def index_bits(self) -> int:
        return (self.m - 1).bit_length()

    @property
    def per_word(self) -> int:
        """Positions per index word."""
        return INDEX_WORD_BITS // self.index_bits

    @property
    def groups(self) -> int:
        return self.width // self.m

    @property
    def slots(self) -> int:
        """Stored values per row."""
        return self.groups * self.n

    @property
    def words(self) -> int:
        """Index words per row."""
        return -(-self.slots // self.per_word)

    @property
    def whole_groups_per_word(self) -> bool:
        """Whether an index word's positions cover whole groups."""
        return self.per_word % self.n == 0

    @property
    def word_cols(self) -> int:
        """Dense columns whose groups one index word covers wholly."""
        return self.per_word // self.n * self.m

    @property
    def params(self) -> dict[str, int]:
        """The storage's record of this code (`#layout.storage<..., {n = ...}>`)."""
        return {"n": self.n, "m": self.m, "index_bits": self.index_bits, "per_word": self.per_word,
                "slots": self.slots, "words": self.words}  # fmt: skip

    def word_of(self, slot: int) -> tuple[int, int]:
        """(index word, bit offset) of slot `slot`'s position."""
        word, field = divmod(slot, self.per_word)
        return word, field * self.index_bits

    def column_of(self, slot: int) -> int:
        """The first dense column of slot `slot`'s group."""
        return slot // self.n * self.m

    def valid_slots(self, columns: int) -> int:
        """The slots of the first `columns` dense columns of a row (a multiple of m)."""
        return columns // self.m * self.n

    # ------------------------------------------------------------------ numpy

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

    def encode_rows(self, x: Array) -> tuple[Array, Array]:
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
            words |= by_word[:, :, k] << np.uint32(self.word_of(k)[1])
        return values, words.view(np.int32)

    def positions(self, words: Array) -> Array:
        """Positions [rows, groups, n] within their groups, from int32 index words [rows, words]."""
        shifts = np.arange(self.per_word, dtype=np.uint32) * np.uint32(self.index_bits)
        slots = (words.view(np.uint32)[..., None] >> shifts) & np.uint32((1 << self.index_bits) - 1)
        slots = slots.reshape(words.shape[0], self.words * self.per_word)[:, : self.slots]
        return slots.astype(np.intp).reshape(words.shape[0], self.groups, self.n)

    def columns(self, words: Array) -> Array:
        """The dense column [rows, slots] of every slot, from int32 index words [rows, words]."""
        return (self.positions(words) + np.arange(self.groups)[:, None] * self.m).reshape(words.shape[0], self.slots)

    def decode_rows(self, values: Array, words: Array) -> Array:
        """The dense rows [rows, width] of encoded rows."""
        dense = np.zeros((values.shape[0], self.width), values.dtype)
        np.put_along_axis(dense, self.columns(words), values.reshape(values.shape[0], self.slots), axis=-1)
        return dense

    def index_error(self, words: Array) -> tuple[int, str] | None:
        """(row, reason) of the first row with malformed index words. An index has log2(M) bits,
        so it is < M by construction; what can go wrong is order, duplicates and stray bits."""
        filled = np.minimum(self.per_word, self.slots - np.arange(self.words) * self.per_word)
        used = ((np.uint64(1) << (filled * self.index_bits).astype(np.uint64)) - np.uint64(1)).astype(np.uint32)
        stray = np.asarray((words.view(np.uint32) & ~used) != 0)
        positions = self.positions(words)
        unordered = np.any(np.diff(positions, axis=-1) <= 0, axis=-1, keepdims=False).reshape(positions.shape[:2])
        bad_rows = np.flatnonzero(stray.any(axis=1) | unordered.any(axis=1))
        if not bad_rows.size:
            return None
        row = int(bad_rows[0])
        if stray[row].any():
            w = int(np.argmax(stray[row]))
            bits = f"{int(words[row, w]) & 0xFFFFFFFF:0{INDEX_WORD_BITS}b}"
            return row, f"word {w} = 0b{bits} has bits set above its {filled[w]} indices of {self.index_bits} bits"
        group = int(np.argmax(unordered[row]))
        return row, f"group {group} positions {positions[row, group].tolist()} are not distinct and ascending"

    # ------------------------------------------------------------------ Codec

    def encode(self, w: Array) -> dict[str, Array]:
        values, indices = self.encode_rows(w)
        return {"values": values, "indices": indices}

    def decode(self, arrays: dict[str, Array]) -> Array:
        return self.decode_rows(arrays["values"], arrays["indices"])

    def check(self, arrays: dict[str, Array]) -> None:
        if error := self.index_error(arrays["indices"]):
            raise ValueError(f"indices of row {error[0]}: {error[1]}")

    def row_granule(self) -> int:
        return 1

    def cut_rows(self, arrays: dict[str, Array], start: int, stop: int) -> dict[str, Array]:
        # Row r's slots and index words are row r of values and indices (under `nm with Q`,
        # of the values' codes too: ComposedCodec cuts their scales).
        return cut_leading(arrays, ("values", "indices"), arrays["indices"].shape[0], start, stop)
