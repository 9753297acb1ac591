// RUN: stoicc opt %s -p accel-schedule | filecheck %s
// accel-schedule adds the dependency tokens: a GEMM waits for the load queue
// (its last weight load signals it), the store waits for the epilogue, and a
// load into a slot that a GEMM is still reading waits for that GEMM (write after
// read). Dependencies that the queues' order already implies get no token: the
// first load of x and of the weight values, and the index load after a waiting load.

// CHECK:         accel.ld "inp"[0], "x"[0] rows 8 cols 1024 stride 2048{{$}}
// CHECK-NEXT:    accel.ld "inp"[128], "x"[1024] rows 8 cols 1024 stride 2048{{$}}
// CHECK-NEXT:    accel.ld "wgt"[0], "w.values"[0] rows 256 cols 512 stride 1024{{$}}
// CHECK-NEXT:    accel.ld "meta"[0], "w.indices"[0] rows 256 cols 128 stride 256 signal "ex"
// CHECK-NEXT:    accel.cfg
// CHECK-NEXT:    accel.spgemm acc[0] init, inp[0], wgt[0], meta[0] m 8 n 256 k 1024 wait "ld" signal "ld"
// CHECK:         accel.valu "maxi" dst[0] src[0] scl[0] aux[0] rows 8 cols 256 bcast "none" stride 0 signal "st"
// CHECK-NEXT:    accel.st "out0"[0], "acc"[0] rows 8 cols 1024 stride 2048 wait "ex"
// CHECK-NEXT:    accel.ld "wgt"[0], "w.values"[262144] rows 256 cols 512 stride 1024 wait "ex"
// CHECK-NEXT:    accel.ld "meta"[0], "w.indices"[65536] rows 256 cols 128 stride 256 signal "ex"

builtin.module {
  func.func @f() {
    accel.segment "x" size 16384 "input"
    accel.segment "w.values" size 524288 "input"
    accel.segment "w.indices" size 131072 "input"
    accel.segment "b" size 2048 "input"
    accel.segment "out0" size 16384 "output"
    accel.ld "inp"[0], "x"[0] rows 8 cols 1024 stride 2048
    accel.ld "inp"[128], "x"[1024] rows 8 cols 1024 stride 2048
    accel.ld "wgt"[0], "w.values"[0] rows 256 cols 512 stride 1024
    accel.ld "meta"[0], "w.indices"[0] rows 256 cols 128 stride 256
    accel.cfg abits 8 asigned wcode "int8" nm 2 : 4 sq 0 / 0 chunk 0
    accel.spgemm acc[0] init, inp[0], wgt[0], meta[0] m 8 n 256 k 1024
    accel.ld "wgt"[2048], "w.values"[512] rows 256 cols 512 stride 1024
    accel.ld "meta"[512], "w.indices"[128] rows 256 cols 128 stride 256
    accel.spgemm acc[0], inp[128], wgt[2048], meta[512] m 8 n 256 k 1024
    accel.ld "scl"[32], "b"[0] rows 1 cols 1024 stride 1024
    accel.valu "addi" dst[0] src[0] scl[32] aux[0] rows 8 cols 256 bcast "col" stride 0
    accel.valu "maxi" dst[0] src[0] scl[0] aux[0] rows 8 cols 256 bcast "none" stride 0
    accel.st "out0"[0], "acc"[0] rows 8 cols 1024 stride 2048
    accel.ld "wgt"[0], "w.values"[262144] rows 256 cols 512 stride 1024
    accel.ld "meta"[0], "w.indices"[65536] rows 256 cols 128 stride 256
    accel.spgemm acc[128] init, inp[0], wgt[0], meta[0] m 8 n 256 k 1024
    accel.ld "wgt"[2048], "w.values"[262656] rows 256 cols 512 stride 1024
    accel.ld "meta"[512], "w.indices"[65664] rows 256 cols 128 stride 256
    accel.spgemm acc[128], inp[128], wgt[2048], meta[512] m 8 n 256 k 1024
    accel.ld "scl"[48], "b"[1024] rows 1 cols 1024 stride 1024
    accel.valu "addi" dst[128] src[128] scl[48] aux[0] rows 8 cols 256 bcast "col" stride 0
    accel.valu "maxi" dst[128] src[128] scl[0] aux[0] rows 8 cols 256 bcast "none" stride 0
    accel.st "out0"[1024], "acc"[128] rows 8 cols 1024 stride 2048
    accel.finish
    func.return
  }
}

