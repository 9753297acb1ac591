"""Bit-split activations' codec (SPARQLe-style): int8 codes per token as dense low nibbles
plus sparse high nibbles behind a bitmap.

The exact model (docs/formats.md, "Bit-split activations"), for x [R, K] (R tokens):

- c = int8 symmetric per-token codes, exactly `quantize(x, "int8(per=token)")`;
- o = 0, or with `offset` the per-row shift o in [0, min(15, 127 - max c)] maximising
  #{k: 0 <= c_k + o <= 15} (ties: the smallest o): the most codes with a zero high nibble;
- u = c + o = 16 * hi + lo with lo = u & 15 (0..15) and hi = u >> 4 (-8..7) (`split`);
- the value is float32(s) * float32(u - o) = float32(s) * float32(c).

The fields (LO, HI, BITMAP) are stoicc_py.codec.uniform's CodeBits: the packer, the
reference interpreter, the accelerator's split instruction and the CPU kernels' nibble
decoders all read them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stoicc_py.codec import Array, Codec
from stoicc_py.codec.uniform import CodeBits, QuantScheme, Sign, check_scales, quantize

F32 = np.float32
LO, HI, BITMAP = CodeBits(4, Sign.UNSIGNED), CodeBits(4, Sign.TWOS), CodeBits(1, Sign.UNSIGNED)
"""The fields of the lo and hi nibbles (4-bit two's complement) and of the bitmap."""
NIBBLE = 15
"""The largest lo nibble, and its mask."""
ROLES = ("lo", "hi", "bitmap", "counts", "scales", "offsets")


def split(u: Array) -> tuple[Array, Array]:
    """(lo, hi) of integer codes u = 16 * hi + lo: lo = u & 15, hi = u >> 4 (arithmetic)."""
    return u & NIBBLE, u >> 4


@dataclass(frozen=True)
class BitSplit:
    """The buffers of a bit-split [R, K] matrix (docs/formats.md has them bit by bit).

    lo: uint8 [R, K/2], element k's lo in nibble k % 2 of byte k // 2 (low nibble first).
    hi: int8 [R, K/2], the row's non-zero hi nibbles in order of k, entry j in nibble j % 2
    of byte j // 2, 4-bit two's complement; the rest zero. bitmap: uint8 [R, K/8], bit k % 8
    of byte k // 8 set iff hi_k != 0. counts: int32 [R], set bits per row. scales: float32 [R].
    offsets: int32 [R], or None without offset (o = 0).
    """

    lo: Array
    hi: Array
    bitmap: Array
    counts: Array
    scales: Array
    offsets: Array | None

    @classmethod
    def of_arrays(cls, arrays: dict[str, Array]) -> BitSplit:
        lo, hi, bitmap, counts, scales = (arrays[role] for role in ROLES[:-1])
        return cls(lo, hi, bitmap, counts, scales, arrays.get("offsets"))

    def arrays(self) -> dict[str, Array]:
        """The buffers by role (no "offsets" without offset)."""
        return {role: a for role in ROLES if (a := getattr(self, role)) is not None}

    @property
    def shape(self) -> tuple[int, int]:
        return self.lo.shape[0], self.lo.shape[1] * 2

    def offset_values(self) -> Array:
        """o per row, int32 [R] (zeros without offset)."""
        return np.zeros(self.shape[0], np.int32) if self.offsets is None else self.offsets.astype(np.int32)

    def mask(self) -> Array:
        """bool [R, K]: where hi != 0 (the bitmap)."""
        return BITMAP.decode(self.bitmap).astype(bool)

    def nibbles(self) -> tuple[Array, Array]:
        """(lo, hi) as int32 [R, K]: lo in 0..15, hi in -8..7 (0 where the bitmap is clear)."""
        lo = LO.decode(self.lo)
        mask = self.mask()
        compact = HI.decode(self.hi)
        hi = np.zeros(mask.shape, np.int32)
        rank = np.cumsum(mask, axis=1) - 1  # entry of element k in the compacted row
        rows = np.nonzero(mask)[0]
        hi[mask] = compact[rows, rank[mask]]
        return lo, hi

    def codes(self) -> Array:
        """c = 16 * hi + lo - o, int32 [R, K]."""
        lo, hi = self.nibbles()
        return 16 * hi + lo - self.offset_values()[:, None]

    def dequantize(self) -> Array:
        """float32(s) * float32(c) [R, K]."""
        return self.scales.astype(F32)[:, None] * self.codes().astype(F32)

    @property
    def msb_zero_fraction(self) -> float:
        """The fraction of elements whose high nibble is zero: 1 - sum(counts) / (R * K)."""
        rows, width = self.shape
        return 1.0 - float(self.counts.astype(np.int64).sum()) / (rows * width)


def best_offsets(c: Array) -> Array:
    """Per row, the o in [0, min(15, 127 - max c)] with the most codes in [-o, 15 - o] (so that
    c + o has a zero high nibble); ties keep the smallest o. int32 [R]."""
    hits = np.stack([np.count_nonzero((c >= -o) & (c <= NIBBLE - o), axis=1) for o in range(NIBBLE + 1)], axis=1)
    limit = np.minimum(NIBBLE, 127 - c.max(axis=1))  # u = c + o must stay an int8 code
    hits[np.arange(NIBBLE + 1) > limit[:, None]] = -1
    return np.argmax(hits, axis=1).astype(np.int32)  # argmax keeps the first maximum


def _compact(fields: Array, mask: Array) -> Array:
    """Per row, fields[mask] moved to the front in order of k, zeros after."""
    out = np.zeros(fields.shape, fields.dtype)
    rank = np.cumsum(mask, axis=1) - 1
    out[np.nonzero(mask)[0], rank[mask]] = fields[mask]
    return out


def _first_row(bad: Array) -> int:
    return int(np.argmax(bad.any(axis=1) if bad.ndim > 1 else bad))


def _check_hi(xs: BitSplit) -> None:
    """hi holds exactly counts[r] non-zero nibbles per row, then zeros."""
    entries = HI.unpack(xs.hi.view(np.uint8))
    used = np.arange(entries.shape[1]) < xs.counts[:, None]
    bad = (used & (entries == 0)) | (~used & (entries != 0))
    if bad.any():
        r = _first_row(bad)
        j = int(np.argmax(bad[r]))
        why = "is zero, but the bitmap counts it" if used[r, j] else f"is {entries[r, j]}, past the row's count"
        raise ValueError(f"hi of row {r}: nibble {j} {why} ({xs.counts[r]} set bits)")


def check(xs: BitSplit) -> None:
    """Scales finite and >= 0, offsets in 0..15, counts equal to the bitmap's set bits, hi
    compacted (counts[r] non-zero nibbles, then zeros), and codes c = u - o in -127..127."""
    check_scales(xs.scales, "scales")
    if xs.offsets is not None and (bad := (xs.offsets < 0) | (xs.offsets > NIBBLE)).any():
        r = _first_row(bad)
        raise ValueError(f"offsets[{r}] = {xs.offsets[r]} is out of range [0, {NIBBLE}]")
    set_bits = np.count_nonzero(xs.mask(), axis=1)
    if (bad := set_bits != xs.counts).any():
        r = _first_row(bad)
        raise ValueError(f"counts[{r}] = {xs.counts[r]}, but row {r} of the bitmap has {set_bits[r]} set bits")
    _check_hi(xs)
    c = xs.codes()
    if (bad := c < -127).any():
        r = _first_row(bad)
        k = int(np.argmax(bad[r]))
        raise ValueError(f"the code of row {r}, column {k} is {c[r, k]}, outside -127..127")


@dataclass(frozen=True)
class BitSplitCodec(Codec):
    """An [R, K] matrix (K a multiple of 8) in a `#quant.bitsplit` layout: the codes of
    `token` (int8, symmetric, one scale per row), shifted by a per-row offset if `offset`."""

    offset: bool
    token: QuantScheme
    shape: tuple[int, int]

    def split(self, x: Array) -> BitSplit:
        """The bit split of the float32 activations x [R, K]."""
        q = quantize(x, self.token)
        c = q.codes
        o = best_offsets(c) if self.offset else np.zeros(c.shape[0], np.int32)
        lo, hi = split(c + o[:, None])
        mask = hi != 0
        return BitSplit(
            lo=LO.encode(lo),
            hi=HI.encode(_compact(hi, mask)),
            bitmap=BITMAP.encode(mask.astype(np.int32)),
            counts=np.count_nonzero(mask, axis=1).astype(np.int32),
            scales=q.scales.astype(F32),
            offsets=o if self.offset else None,
        )

    def encode(self, w: Array) -> dict[str, Array]:
        return self.split(w).arrays()

    def decode(self, arrays: dict[str, Array]) -> Array:
        return BitSplit.of_arrays(arrays).dequantize()

    def check(self, arrays: dict[str, Array]) -> None:
        check(BitSplit.of_arrays(arrays))


def bitsplit_codec(offset: bool, token: QuantScheme, shape: Sequence[int]) -> BitSplitCodec:
    rows, width = shape
    return BitSplitCodec(offset, token, (rows, width))
