// RUN: stoicc opt %s --split-input-file --verify-diagnostics | filecheck %s
// The accel verifiers (docs/isa.md): every field fits its bits, enum fields name a value,
// cfg's modes are possible, no instruction takes or gives a token on its own queue, segments are sane.

// A line field past its 14 bits (16384 lines = 1 MiB).
func.func @case0() {
  accel.gemm acc[16384] init, inp[0], wgt[0] m 8 n 128 k 256
  func.return
}
// CHECK: accel.gemm: acc = 16384 does not fit its 14-bit field

// -----

// Negative values do not fit either.
func.func @case1() {
  accel.gemm acc[0], inp[0], wgt[0] m -1 n 128 k 256
  func.return
}
// CHECK: accel.gemm: m = -1 does not fit its 16-bit field

// -----

func.func @case2() {
  accel.ld "inp"[0], "x"[0] rows 65536 cols 256 stride 256
  func.return
}
// CHECK: accel.ld: rows = 65536 does not fit its 16-bit field

// -----

func.func @case3() {
  accel.st "x"[0], "acc"[0] rows 1 cols 64 stride 16777216
  func.return
}
// CHECK: accel.st: stride = 16777216 does not fit its 24-bit field

// -----

func.func @case4() {
  accel.valu "add" dst[0] src[0] scl[0] aux[0] rows 1 cols 65536 bcast "none" stride 0
  func.return
}
// CHECK: accel.valu: cols = 65536 does not fit its 16-bit field

// -----

func.func @case5() {
  accel.cfg abits 8 wcode "int8" nm 0 : 0 sq 256 / 128 chunk 0
  func.return
}
// CHECK: accel.cfg: count = 256 does not fit its 8-bit field

// -----

// M = 32 has no encoding (the m field is 5 bits).
func.func @case6() {
  accel.cfg abits 8 wcode "int8" nm 2 : 32 sq 0 / 0 chunk 0
  func.return
}
// CHECK: accel.cfg: m = 32 does not fit its 5-bit field

// -----

func.func @chunk_too_wide() {
  accel.cfg abits 8 wcode "int8" nm 0 : 0 sq 6 / 128 chunk 65536
  func.return
}
// CHECK: accel.cfg: chunk = 65536 does not fit its 16-bit field

// -----

func.func @stride_too_wide() {
  accel.valu "scale" dst[0] src[0] scl[0] aux[0] rows 1 cols 8 bcast "col" stride 65536
  func.return
}
// CHECK: accel.valu: stride = 65536 does not fit its 16-bit field

// -----

// Enum fields: unknown names.
func.func @case7() {
  accel.ld "spad"[0], "x"[0] rows 1 cols 64 stride 64
  func.return
}
// CHECK: accel.ld: buf 'spad' is not one of inp, wgt, acc, meta, scl

// -----

func.func @case8() {
  accel.st "x"[0], "l2"[0] rows 1 cols 64 stride 64
  func.return
}
// CHECK: accel.st: buf 'l2' is not one of inp, wgt, acc, meta, scl

// -----

func.func @case9() {
  accel.valu "fma" dst[0] src[0] scl[0] aux[0] rows 1 cols 1 bcast "none" stride 0
  func.return
}
// CHECK: accel.valu: op 'fma' is not one of cvt, scale, mul, add, addi, max, maxi, macc, quant, split, gelu, silu, sigmoid, tanh

// -----

func.func @case10() {
  accel.valu "add" dst[0] src[0] scl[0] aux[0] rows 1 cols 1 bcast "diag" stride 0
  func.return
}
// CHECK: accel.valu: bcast 'diag' is not one of none, row, col, scalar

// -----

func.func @case11() {
  accel.cfg abits 8 wcode "int7" nm 0 : 0 sq 0 / 0 chunk 0
  func.return
}
// CHECK: accel.cfg: wcode 'int7' is not one of int8, int4, int2, ternary, binary, int3, int5, int6

// -----

func.func @case12() {
  accel.rdcnt "joules", "x"[0]
  func.return
}
// CHECK: accel.rdcnt: counter 'joules' is not one of cycles, macs, dram_bytes, ex_busy

// -----

func.func @case13() {
  accel.gemm acc[0], inp[0], wgt[0] m 1 n 1 k 1 wait "ld,dma"
  func.return
}
// CHECK: unknown queue 'dma' (expected one of ld, ex, st)

// -----

// cfg: abits is 8 or 4.
func.func @case14() {
  accel.cfg abits 5 wcode "int8" nm 0 : 0 sq 0 / 0 chunk 0
  func.return
}
// CHECK: accel.cfg: abits must be 8 or 4

// -----

func.func @case15() {
  accel.cfg abits 16 asigned wcode "int8" nm 0 : 0 sq 0 / 0 chunk 0
  func.return
}
// CHECK: accel.cfg: abits = 16 does not fit its 4-bit field

// -----

// cfg: N:M needs 0 < n < m (n = 0 is dense).
func.func @case16() {
  accel.cfg abits 8 wcode "int8" nm 4 : 4 sq 0 / 0 chunk 0
  func.return
}
// CHECK: accel.cfg: N:M sparsity needs 0 < n < m, got 4:4

// -----

func.func @case17() {
  accel.cfg abits 4 wcode "int4" nm 3 : 2 sq 0 / 0 chunk 0
  func.return
}
// CHECK: accel.cfg: N:M sparsity needs 0 < n < m, got 3:2

// -----

// No instruction takes or gives a token on its own queue.
func.func @case18() {
  accel.gemm acc[0], inp[0], wgt[0] m 1 n 1 k 1 wait "ex"
  func.return
}
// CHECK: accel.gemm runs on the ex queue and cannot take or give itself a token

// -----

func.func @case19() {
  accel.ld "inp"[0], "x"[0] rows 1 cols 64 stride 64 signal "ex,ld"
  func.return
}
// CHECK: accel.ld runs on the ld queue and cannot take or give itself a token

// -----

func.func @case20() {
  accel.st "x"[0], "acc"[0] rows 1 cols 64 stride 64 wait "st"
  func.return
}
// CHECK: accel.st runs on the st queue and cannot take or give itself a token

// -----

func.func @case21() {
  accel.rdcnt "cycles", "x"[0] signal "st"
  func.return
}
// CHECK: accel.rdcnt runs on the st queue and cannot take or give itself a token

// -----

func.func @case22() {
  accel.sync "ld" wait "st" signal "ld"
  func.return
}
// CHECK: accel.sync runs on the ld queue and cannot take or give itself a token

// -----

func.func @case23() {
  accel.fence wait "ex"
  func.return
}
// CHECK: accel.fence runs on the ex queue and cannot take or give itself a token

// -----

// Segments: a kind of input, output or temp, and a size that is not negative.
func.func @case24() {
  accel.segment "x" size 64 "scratch"
  func.return
}
// CHECK: segment kind 'scratch' is not one of input, output, temp

// -----

func.func @case25() {
  accel.segment "x" size -64 "input"
  func.return
}
// CHECK: a segment's size cannot be negative
