// RUN: stoicc opt %s | stoicc opt | filecheck %s
// Every tdsl op, on tensors and on buffers, prints in a form that parses back.

// CHECK-LABEL: func.func @tensors
func.func @tensors(%x: !tdsl.tensor<[M, 64], f32>, %w: !tdsl.tensor<[128, 64], f32, #sparse.nm<2, 4>>, %b: !tdsl.tensor<[128], f32>) -> !tdsl.tensor<[M, 128], f32> {
  // CHECK: tdsl.linear %x, %w bias %b {act = "relu", tile = array<i64: 16, 64, 256>} : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 64], f32, #sparse.nm<2, 4>> bias !tdsl.tensor<[128], f32> -> !tdsl.tensor<[M, 128], f32>
  %h = tdsl.linear %x, %w bias %b {act = "relu", tile = array<i64: 16, 64, 256>} : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 64], f32, #sparse.nm<2, 4>> bias !tdsl.tensor<[128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.transpose %x : !tdsl.tensor<[M, 64], f32> -> !tdsl.tensor<[64, M], f32>
  %t = tdsl.transpose %x : !tdsl.tensor<[M, 64], f32> -> !tdsl.tensor<[64, M], f32>
  // CHECK: tdsl.matmul %x, %t : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[64, M], f32> -> !tdsl.tensor<[M, M], f32>
  %g = tdsl.matmul %x, %t : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[64, M], f32> -> !tdsl.tensor<[M, M], f32>
  // CHECK: tdsl.constant {value = 2.000000e+00 : f32} : !tdsl.tensor<[], f32>
  %c = tdsl.constant {value = 2.0 : f32} : !tdsl.tensor<[], f32>
  // CHECK: tdsl.constant {value = 3 : i32} : !tdsl.tensor<[], i32>
  %ci = tdsl.constant {value = 3 : i32} : !tdsl.tensor<[], i32>
  // CHECK: tdsl.constant {value = 1.250000e-01 : f32} : !tdsl.tensor<[], bf16>
  %ch = tdsl.constant {value = 0.125 : f32} : !tdsl.tensor<[], bf16>
  // CHECK: tdsl.add %h, %b : !tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[128], f32> -> !tdsl.tensor<[M, 128], f32>
  %s = tdsl.add %h, %b : !tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.sub
  %d = tdsl.sub %s, %c : !tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.mul
  %m = tdsl.mul %d, %d : !tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.div
  %q = tdsl.div %m, %c : !tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.gelu
  %u1 = tdsl.gelu %q : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.silu
  %u2 = tdsl.silu %u1 : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.sigmoid
  %u3 = tdsl.sigmoid %u2 : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.tanh
  %u4 = tdsl.tanh %u3 : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.exp
  %u5 = tdsl.exp %u4 : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.neg
  %u6 = tdsl.neg %u5 : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.abs
  %u7 = tdsl.abs %u6 : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.sqrt
  %u8 = tdsl.sqrt %u7 : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  // CHECK: tdsl.sum %u8 {axis = 1 : i64} : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M], f32>
  %r = tdsl.sum %u8 {axis = 1 : i64} : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M], f32>
  // CHECK: tdsl.max %u8 {axis = 0 : i64} : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[128], f32>
  %mx = tdsl.max %u8 {axis = 0 : i64} : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[128], f32>
  // CHECK: tdsl.softmax %u8 {axis = 1 : i64} : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  %sm = tdsl.softmax %u8 {axis = 1 : i64} : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  func.return %sm : !tdsl.tensor<[M, 128], f32>
}

// CHECK-LABEL: func.func @quant
func.func @quant(%x: !tdsl.tensor<[M, 64], f32>) -> !tdsl.tensor<[M, 64], f32> {
  // CHECK: %q = tdsl.quantize %x {layout = #quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>} : !tdsl.tensor<[M, 64], f32> -> !tdsl.tensor<[M, 64], f32, #quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>>
  %q = tdsl.quantize %x {layout = #quant.uniform<int8, per = token>} : !tdsl.tensor<[M, 64], f32> -> !tdsl.tensor<[M, 64], f32, #quant.uniform<int8, per = token>>
  // CHECK: tdsl.dequantize %q : !tdsl.tensor<[M, 64], f32, #quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>> -> !tdsl.tensor<[M, 64], f32>
  %d = tdsl.dequantize %q : !tdsl.tensor<[M, 64], f32, #quant.uniform<int8, per = token>> -> !tdsl.tensor<[M, 64], f32>
  func.return %d : !tdsl.tensor<[M, 64], f32>
}

// CHECK-LABEL: func.func @buffers
func.func @buffers(%x: memref<?x64xf32>, %w: memref<128x64xf32>, %o: memref<?x128xf32>) {
  // CHECK: tdsl.linear %x, %w into %o {act = "gelu"} : memref<?x64xf32>, memref<128x64xf32> into memref<?x128xf32>
  tdsl.linear %x, %w into %o {act = "gelu"} : memref<?x64xf32>, memref<128x64xf32> into memref<?x128xf32>
  // CHECK: tdsl.relu %o into %o : memref<?x128xf32> into memref<?x128xf32>
  tdsl.relu %o into %o : memref<?x128xf32> into memref<?x128xf32>
  func.return
}
