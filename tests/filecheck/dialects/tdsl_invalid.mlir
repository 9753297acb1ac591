// RUN: stoicc opt %s --split-input-file --verify-diagnostics | filecheck %s
// The tdsl verifiers reject inconsistent types with a message that says why.

func.func @bad_result(%x: !tdsl.tensor<[M, 64], f32>) -> !tdsl.tensor<[M, 65], f32> {
  %0 = tdsl.relu %x : !tdsl.tensor<[M, 64], f32> -> !tdsl.tensor<[M, 65], f32>
  func.return %0 : !tdsl.tensor<[M, 65], f32>
}
// CHECK: 'tdsl.relu' result type f32[M, 65] does not match inferred f32[M, 64]

// -----

func.func @bad_contraction(%x: !tdsl.tensor<[M, 64], f32>, %w: !tdsl.tensor<[128, 32], f32>) -> !tdsl.tensor<[M, 128], f32> {
  %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 32], f32> -> !tdsl.tensor<[M, 128], f32>
  func.return %0 : !tdsl.tensor<[M, 128], f32>
}
// CHECK: reduction dimensions differ: 64 in f32[M, 64] and 32 in f32[128, 32]

// -----

func.func @bad_broadcast(%x: !tdsl.tensor<[M, 64], f32>, %y: !tdsl.tensor<[N, 64], f32>) -> !tdsl.tensor<[M, 64], f32> {
  %0 = tdsl.add %x, %y : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[N, 64], f32> -> !tdsl.tensor<[M, 64], f32>
  func.return %0 : !tdsl.tensor<[M, 64], f32>
}
// CHECK: cannot broadcast dimension M with N

// -----

func.func @bad_axis(%x: !tdsl.tensor<[M, 64], f32>) -> !tdsl.tensor<[M], f32> {
  %0 = tdsl.sum %x {axis = 2 : i64} : !tdsl.tensor<[M, 64], f32> -> !tdsl.tensor<[M], f32>
  func.return %0 : !tdsl.tensor<[M], f32>
}
// CHECK: axis=2 is out of range for f32[M, 64]

// -----

func.func @bad_activation(%x: !tdsl.tensor<[4, 4], f32>) -> !tdsl.tensor<[4, 4], f32> {
  %0 = tdsl.matmul %x, %x {act = "swish"} : !tdsl.tensor<[4, 4], f32>, !tdsl.tensor<[4, 4], f32> -> !tdsl.tensor<[4, 4], f32>
  func.return %0 : !tdsl.tensor<[4, 4], f32>
}
// CHECK: unknown activation 'swish'

// -----

func.func @neither(%x: memref<4xf32>) {
  %0 = tdsl.relu %x : memref<4xf32> -> !tdsl.tensor<[4], f32>
  func.return
}
// CHECK: 'tdsl.relu' mixes tensor and memref operands

// -----

func.func @dequantize_dense(%x: !tdsl.tensor<[4, 4], f32>) -> !tdsl.tensor<[4, 4], f32> {
  %0 = tdsl.dequantize %x : !tdsl.tensor<[4, 4], f32> -> !tdsl.tensor<[4, 4], f32>
  func.return %0 : !tdsl.tensor<[4, 4], f32>
}
// CHECK: dequantize expects a quantized tensor, got f32[4, 4] with layout dense

// -----

func.func @quantize_wrong_layout(%x: !tdsl.tensor<[4, 4], f32>) -> !tdsl.tensor<[4, 4], f32, #quant.uniform<int8>> {
  %0 = tdsl.quantize %x {layout = #quant.uniform<int8, per = token>} : !tdsl.tensor<[4, 4], f32> -> !tdsl.tensor<[4, 4], f32, #quant.uniform<int8>>
  func.return %0 : !tdsl.tensor<[4, 4], f32, #quant.uniform<int8>>
}
// CHECK: 'tdsl.quantize' result type f32[4, 4] @ int8() does not match inferred f32[4, 4] @ int8(per=token)

// -----

func.func @where_needs_bool(%x: !tdsl.tensor<[4], f32>) -> !tdsl.tensor<[4], f32> {
  %0 = tdsl.where %x, %x, %x : !tdsl.tensor<[4], f32>, !tdsl.tensor<[4], f32>, !tdsl.tensor<[4], f32> -> !tdsl.tensor<[4], f32>
  func.return %0 : !tdsl.tensor<[4], f32>
}
// CHECK: where() needs a bool condition (e.g. a comparison), got f32[4]

// -----

func.func @compare_dtypes(%x: !tdsl.tensor<[4], f32>, %i: !tdsl.tensor<[4], i32>) -> !tdsl.tensor<[4], i1> {
  %0 = tdsl.lt %x, %i : !tdsl.tensor<[4], f32>, !tdsl.tensor<[4], i32> -> !tdsl.tensor<[4], i1>
  func.return %0 : !tdsl.tensor<[4], i1>
}
// CHECK: cannot compare tensors of different element types: f32[4] and i32[4]

// -----

func.func @compare_result(%x: !tdsl.tensor<[4], f32>) -> !tdsl.tensor<[4], f32> {
  %0 = tdsl.lt %x, %x : !tdsl.tensor<[4], f32>, !tdsl.tensor<[4], f32> -> !tdsl.tensor<[4], f32>
  func.return %0 : !tdsl.tensor<[4], f32>
}
// CHECK: 'tdsl.lt' result type f32[4] does not match inferred bool[4]

// -----

func.func @keepdims_type(%x: !tdsl.tensor<[M, 4], f32>) -> !tdsl.tensor<[M], f32> {
  %0 = tdsl.sum %x {axis = 1 : i64, keepdims} : !tdsl.tensor<[M, 4], f32> -> !tdsl.tensor<[M], f32>
  func.return %0 : !tdsl.tensor<[M], f32>
}
// CHECK: 'tdsl.sum' result type f32[M] does not match inferred f32[M, 1]

// -----

func.func @iota_axis() -> !tdsl.tensor<[4], i32> {
  %0 = tdsl.iota {shape = [#builtin.int<4>], axis = 1 : i64} : -> !tdsl.tensor<[4], i32>
  func.return %0 : !tdsl.tensor<[4], i32>
}
// CHECK: axis=1 is out of range for i32[4]

// -----

func.func @bool_arithmetic(%c: !tdsl.tensor<[4], i1>) -> !tdsl.tensor<[4], i1> {
  %0 = tdsl.add %c, %c : !tdsl.tensor<[4], i1>, !tdsl.tensor<[4], i1> -> !tdsl.tensor<[4], i1>
  func.return %0 : !tdsl.tensor<[4], i1>
}
// CHECK: add is not defined on bool

// -----

func.func @constant_kind() -> !tdsl.tensor<[], i32> {
  %0 = tdsl.constant {value = 1.5 : f32} : !tdsl.tensor<[], i32>
  func.return %0 : !tdsl.tensor<[], i32>
}
// CHECK: tdsl.constant of i32[] needs an integer value
