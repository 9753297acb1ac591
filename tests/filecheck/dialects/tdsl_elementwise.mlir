// RUN: stoicc opt %s | stoicc opt | filecheck %s
// Comparisons, where, keepdims reductions, mean, rsqrt, iota and dim print in a form that parses back.

// CHECK-LABEL: func.func @masks
func.func @masks(%x: !tdsl.tensor<[T, S], f32>, %y: !tdsl.tensor<[S], f32>) -> !tdsl.tensor<[T, 1], f32> {
  // CHECK: tdsl.lt %x, %y : !tdsl.tensor<[T, S], f32>, !tdsl.tensor<[S], f32> -> !tdsl.tensor<[T, S], i1>
  %c = tdsl.lt %x, %y : !tdsl.tensor<[T, S], f32>, !tdsl.tensor<[S], f32> -> !tdsl.tensor<[T, S], i1>
  // CHECK: tdsl.le
  %c1 = tdsl.le %x, %y : !tdsl.tensor<[T, S], f32>, !tdsl.tensor<[S], f32> -> !tdsl.tensor<[T, S], i1>
  // CHECK: tdsl.gt
  %c2 = tdsl.gt %x, %y : !tdsl.tensor<[T, S], f32>, !tdsl.tensor<[S], f32> -> !tdsl.tensor<[T, S], i1>
  // CHECK: tdsl.ge
  %c3 = tdsl.ge %x, %y : !tdsl.tensor<[T, S], f32>, !tdsl.tensor<[S], f32> -> !tdsl.tensor<[T, S], i1>
  // CHECK: tdsl.eq
  %c4 = tdsl.eq %x, %y : !tdsl.tensor<[T, S], f32>, !tdsl.tensor<[S], f32> -> !tdsl.tensor<[T, S], i1>
  // CHECK: tdsl.ne
  %c5 = tdsl.ne %x, %y : !tdsl.tensor<[T, S], f32>, !tdsl.tensor<[S], f32> -> !tdsl.tensor<[T, S], i1>
  // CHECK: tdsl.where %c, %x, %y : !tdsl.tensor<[T, S], i1>, !tdsl.tensor<[T, S], f32>, !tdsl.tensor<[S], f32> -> !tdsl.tensor<[T, S], f32>
  %w = tdsl.where %c, %x, %y : !tdsl.tensor<[T, S], i1>, !tdsl.tensor<[T, S], f32>, !tdsl.tensor<[S], f32> -> !tdsl.tensor<[T, S], f32>
  // CHECK: tdsl.iota {shape = [#builtin.int<4>, "S"], axis = 1 : i64} : -> !tdsl.tensor<[4, S], i32>
  %i = tdsl.iota {shape = [#builtin.int<4>, "S"], axis = 1 : i64} : -> !tdsl.tensor<[4, S], i32>
  // CHECK: tdsl.dim %x {axis = 0 : i64} : !tdsl.tensor<[T, S], f32> -> !tdsl.tensor<[], i32>
  %d = tdsl.dim %x {axis = 0 : i64} : !tdsl.tensor<[T, S], f32> -> !tdsl.tensor<[], i32>
  // CHECK: tdsl.rsqrt %w : !tdsl.tensor<[T, S], f32> -> !tdsl.tensor<[T, S], f32>
  %r = tdsl.rsqrt %w : !tdsl.tensor<[T, S], f32> -> !tdsl.tensor<[T, S], f32>
  // CHECK: tdsl.max %r {axis = 1 : i64, keepdims} : !tdsl.tensor<[T, S], f32> -> !tdsl.tensor<[T, 1], f32>
  %m = tdsl.max %r {axis = 1 : i64, keepdims} : !tdsl.tensor<[T, S], f32> -> !tdsl.tensor<[T, 1], f32>
  // CHECK: tdsl.mean %r {axis = 0 : i64} : !tdsl.tensor<[T, S], f32> -> !tdsl.tensor<[S], f32>
  %a = tdsl.mean %r {axis = 0 : i64} : !tdsl.tensor<[T, S], f32> -> !tdsl.tensor<[S], f32>
  func.return %m : !tdsl.tensor<[T, 1], f32>
}

// CHECK-LABEL: func.func @buffers
func.func @buffers(%x: memref<?x8xf32>, %c: memref<?x8xi1>, %i: memref<?x8xi32>, %d: memref<i32>) {
  // CHECK: tdsl.ge %x, %x into %c : memref<?x8xf32>, memref<?x8xf32> into memref<?x8xi1>
  tdsl.ge %x, %x into %c : memref<?x8xf32>, memref<?x8xf32> into memref<?x8xi1>
  // CHECK: tdsl.where %c, %x, %x into %x : memref<?x8xi1>, memref<?x8xf32>, memref<?x8xf32> into memref<?x8xf32>
  tdsl.where %c, %x, %x into %x : memref<?x8xi1>, memref<?x8xf32>, memref<?x8xf32> into memref<?x8xf32>
  // CHECK: tdsl.iota into %i {shape = ["T", #builtin.int<8>], axis = 0 : i64} : into memref<?x8xi32>
  tdsl.iota into %i {shape = ["T", #builtin.int<8>], axis = 0 : i64} : into memref<?x8xi32>
  // CHECK: tdsl.dim %x into %d {axis = 0 : i64} : memref<?x8xf32> into memref<i32>
  tdsl.dim %x into %d {axis = 0 : i64} : memref<?x8xf32> into memref<i32>
  func.return
}
