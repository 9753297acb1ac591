// RUN: stoicc opt %s | stoicc opt | filecheck %s
// RUN: stoicc opt %s --print-op-generic | stoicc opt | filecheck %s
// Every accel op (docs/isa.md) prints in a form that parses back, in custom and generic form.

// CHECK-LABEL: func.func @every_instruction() {
// CHECK-NEXT:    accel.segment "x" size 2048 "input"
// CHECK-NEXT:    accel.segment "w" size 32768 "input"
// CHECK-NEXT:    accel.segment "tmp0" size 64 "temp"
// CHECK-NEXT:    accel.segment "out0" size 4096 "output"
// CHECK-NEXT:    accel.cfg abits 8 asigned wcode "int8" nm 0 : 0 sq 0 / 0 chunk 0
// CHECK-NEXT:    accel.cfg abits 4 wcode "int4" nm 2 : 4 sq 6 / 128 chunk 256 wait "ld" signal "st"
  accel.cfg abits 8 asigned wcode "int3" nm 0 : 0 sq 0 / 0 chunk 0 wzp zstride 5
// CHECK-NEXT:    accel.cfg abits 8 asigned wcode "int3" nm 0 : 0 sq 0 / 0 chunk 0 wzp zstride 5
// CHECK-NEXT:    accel.ld "inp"[0], "x"[0] rows 8 cols 256 stride 256
// CHECK-NEXT:    accel.ld "wgt"[16383], "w"[64] rows 128 cols 256 stride 256 wait "ex,st" signal "ex"
// CHECK-NEXT:    accel.st "out0"[0], "acc"[0] rows 8 cols 512 stride 512 wait "ex"
// CHECK-NEXT:    accel.gemm acc[0] init, inp[0], wgt[0] m 8 n 128 k 256 wait "ld" signal "st"
// CHECK-NEXT:    accel.gemm acc[1], inp[2], wgt[3] m 1 n 2 k 3
  accel.gemm acc[1] init, inp[2], wgt[3], zp[16383] col 4095 m 1 n 2 k 3
// CHECK-NEXT:    accel.gemm acc[1] init, inp[2], wgt[3], zp[16383] col 4095 m 1 n 2 k 3
// CHECK-NEXT:    accel.spgemm acc[0], inp[0], wgt[0], meta[5] m 8 n 128 k 256
// CHECK-NEXT:    accel.bsgemm acc[0], inp[96], wgt[0], bitmap[7] m 4 n 128 k 512
// CHECK-NEXT:    accel.sqgemm acc[256] init, inp[0], wgt[256], index[0] m 4 n 128 k 6 wait "ld" signal "ld"
// CHECK-NEXT:    accel.valu "quant" dst[0] src[0] scl[0] aux[128] rows 4 cols 512 bcast "none" stride 0
// CHECK-NEXT:    accel.valu "split" dst[64] src[0] scl[0] aux[96] rows 4 cols 512 bcast "none" stride 0
// CHECK-NEXT:    accel.sync "ld" wait "st" signal "ex,st"
// CHECK-NEXT:    accel.sync "st" wait "ld"
// CHECK-NEXT:    accel.fence
// CHECK-NEXT:    accel.fence wait "st" signal "ld"
// CHECK-NEXT:    accel.rdcnt "cycles", "tmp0"[8] wait "ex"
// CHECK-NEXT:    accel.rdcnt "ex_busy", "out0"[4088]
// CHECK-NEXT:    accel.finish
// CHECK-NEXT:    func.return
func.func @every_instruction() {
  accel.segment "x" size 2048 "input"
  accel.segment "w" size 32768 "input"
  accel.segment "tmp0" size 64 "temp"
  accel.segment "out0" size 4096 "output"
  accel.cfg abits 8 asigned wcode "int8" nm 0 : 0 sq 0 / 0 chunk 0
  accel.cfg abits 4 wcode "int4" nm 2 : 4 sq 6 / 128 chunk 256 wait "ld" signal "st"
  accel.cfg abits 8 asigned wcode "int3" nm 0 : 0 sq 0 / 0 chunk 0 wzp zstride 5
  accel.ld "inp"[0], "x"[0] rows 8 cols 256 stride 256
  accel.ld "wgt"[16383], "w"[64] rows 128 cols 256 stride 256 wait "ex,st" signal "ex"
  accel.st "out0"[0], "acc"[0] rows 8 cols 512 stride 512 wait "ex"
  accel.gemm acc[0] init, inp[0], wgt[0] m 8 n 128 k 256 wait "ld" signal "st"
  accel.gemm acc[1], inp[2], wgt[3] m 1 n 2 k 3
  accel.gemm acc[1] init, inp[2], wgt[3], zp[16383] col 4095 m 1 n 2 k 3
  accel.spgemm acc[0], inp[0], wgt[0], meta[5] m 8 n 128 k 256
  accel.bsgemm acc[0], inp[96], wgt[0], bitmap[7] m 4 n 128 k 512
  accel.sqgemm acc[256] init, inp[0], wgt[256], index[0] m 4 n 128 k 6 wait "ld" signal "ld"
  accel.valu "quant" dst[0] src[0] scl[0] aux[128] rows 4 cols 512 bcast "none" stride 0
  accel.valu "split" dst[64] src[0] scl[0] aux[96] rows 4 cols 512 bcast "none" stride 0
  accel.sync "ld" wait "st" signal "ex,st"
  accel.sync "st" wait "ld"
  accel.fence
  accel.fence wait "st" signal "ld"
  accel.rdcnt "cycles", "tmp0"[8] wait "ex"
  accel.rdcnt "ex_busy", "out0"[4088]
  accel.finish
  func.return
}

// Every value of the enum fields: weight codes, vector ops, broadcasts, buffers, counters.

// CHECK-LABEL: func.func @every_enum_value() {
// CHECK-NEXT:    accel.cfg abits 8 wcode "int2" nm 1 : 2 sq 0 / 0 chunk 0
// CHECK-NEXT:    accel.cfg abits 8 wcode "ternary" nm 0 : 0 sq 0 / 0 chunk 0
// CHECK-NEXT:    accel.cfg abits 8 wcode "binary" nm 14 : 15 sq 255 / 65535 chunk 65535
// CHECK-NEXT:    accel.valu "cvt" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
// CHECK-NEXT:    accel.valu "scale" dst[320] src[384] scl[18] aux[128] rows 4 cols 128 bcast "col" stride 4
// CHECK-NEXT:    accel.valu "mul" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "row" stride 0
// CHECK-NEXT:    accel.valu "add" dst[0] src[0] scl[2] aux[0] rows 4 cols 128 bcast "scalar" stride 0
// CHECK-NEXT:    accel.valu "addi" dst[0] src[0] scl[16] aux[0] rows 8 cols 128 bcast "col" stride 0
// CHECK-NEXT:    accel.valu "max" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
// CHECK-NEXT:    accel.valu "maxi" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
// CHECK-NEXT:    accel.valu "macc" dst[320] src[256] scl[2] aux[0] rows 4 cols 128 bcast "scalar" stride 0
// CHECK-NEXT:    accel.valu "gelu" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
// CHECK-NEXT:    accel.valu "silu" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
// CHECK-NEXT:    accel.valu "sigmoid" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
// CHECK-NEXT:    accel.valu "tanh" dst[16383] src[16383] scl[16383] aux[16383] rows 65535 cols 65535 bcast "none" stride 65535
// CHECK-NEXT:    accel.ld "acc"[0], "x"[0] rows 1 cols 1 stride 16777215
// CHECK-NEXT:    accel.ld "meta"[0], "x"[0] rows 65535 cols 65535 stride 1
// CHECK-NEXT:    accel.ld "scl"[0], "x"[0] rows 1 cols 4 stride 4 signal "ex,st"
// CHECK-NEXT:    accel.st "x"[0], "inp"[0] rows 1 cols 64 stride 64
// CHECK-NEXT:    accel.rdcnt "macs", "x"[0]
// CHECK-NEXT:    accel.rdcnt "dram_bytes", "x"[8] wait "ld,ex"
// CHECK-NEXT:    accel.sync "ex" wait "ld,st" signal "ld,st"
// CHECK-NEXT:    func.return
func.func @every_enum_value() {
  accel.cfg abits 8 wcode "int2" nm 1 : 2 sq 0 / 0 chunk 0
  accel.cfg abits 8 wcode "ternary" nm 0 : 0 sq 0 / 0 chunk 0
  accel.cfg abits 8 wcode "binary" nm 14 : 15 sq 255 / 65535 chunk 65535
  accel.valu "cvt" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
  accel.valu "scale" dst[320] src[384] scl[18] aux[128] rows 4 cols 128 bcast "col" stride 4
  accel.valu "mul" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "row" stride 0
  accel.valu "add" dst[0] src[0] scl[2] aux[0] rows 4 cols 128 bcast "scalar" stride 0
  accel.valu "addi" dst[0] src[0] scl[16] aux[0] rows 8 cols 128 bcast "col" stride 0
  accel.valu "max" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
  accel.valu "maxi" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
  accel.valu "macc" dst[320] src[256] scl[2] aux[0] rows 4 cols 128 bcast "scalar" stride 0
  accel.valu "gelu" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
  accel.valu "silu" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
  accel.valu "sigmoid" dst[0] src[0] scl[0] aux[0] rows 4 cols 128 bcast "none" stride 0
  accel.valu "tanh" dst[16383] src[16383] scl[16383] aux[16383] rows 65535 cols 65535 bcast "none" stride 65535
  accel.ld "acc"[0], "x"[0] rows 1 cols 1 stride 16777215
  accel.ld "meta"[0], "x"[0] rows 65535 cols 65535 stride 1
  accel.ld "scl"[0], "x"[0] rows 1 cols 4 stride 4 signal "ex,st"
  accel.st "x"[0], "inp"[0] rows 1 cols 64 stride 64
  accel.rdcnt "macs", "x"[0]
  accel.rdcnt "dram_bytes", "x"[8] wait "ld,ex"
  accel.sync "ex" wait "ld,st" signal "ld,st"
  func.return
}
