// RUN: stoicc opt %s --split-input-file --verify-diagnostics | filecheck %s
// The structure ops' verifiers say why a shape is wrong.

func.func @bad_perm(%x: !tdsl.tensor<[2, T, 4], f32>) -> !tdsl.tensor<[T, 2, 4], f32> {
  %0 = tdsl.transpose %x {perm = array<i64: 1, 1, 2>} : !tdsl.tensor<[2, T, 4], f32> -> !tdsl.tensor<[T, 2, 4], f32>
  func.return %0 : !tdsl.tensor<[T, 2, 4], f32>
}
// CHECK: transpose's permutation [1, 1, 2] is not a permutation of the 3 axes of f32[2, T, 4]

// -----

func.func @reshape_count(%x: !tdsl.tensor<[T, 48], f32>) -> !tdsl.tensor<[T, 5, 8], f32> {
  %0 = tdsl.reshape %x {shape = ["T", #builtin.int<5>, #builtin.int<8>]} : !tdsl.tensor<[T, 48], f32> -> !tdsl.tensor<[T, 5, 8], f32>
  func.return %0 : !tdsl.tensor<[T, 5, 8], f32>
}
// CHECK: reshape cannot change the number of elements: f32[T, 48] has 48*T, [T, 5, 8] has 40*T

// -----

func.func @slice_range(%x: !tdsl.tensor<[P, 8], f32>) -> !tdsl.tensor<[P, 4], f32> {
  %0 = tdsl.slice %x {starts = [#builtin.int<0>, #builtin.int<6>], stops = ["P", #builtin.int<10>]} : !tdsl.tensor<[P, 8], f32> -> !tdsl.tensor<[P, 4], f32>
  func.return %0 : !tdsl.tensor<[P, 4], f32>
}
// CHECK: slice 6:10 is out of range for axis 1 of f32[P, 8] (size 8)

// -----

func.func @slice_past_symbolic_end(%x: !tdsl.tensor<["P+T", 8], f32>) -> !tdsl.tensor<["P+T", 8], f32> {
  %0 = tdsl.slice %x {starts = [#builtin.int<1>, #builtin.int<0>], stops = ["P+T+1", #builtin.int<8>]} : !tdsl.tensor<["P+T", 8], f32> -> !tdsl.tensor<["P+T", 8], f32>
  func.return %0 : !tdsl.tensor<["P+T", 8], f32>
}
// CHECK: slice 1:P+T+1 is out of range for axis 0 of f32[P+T, 8] (size P+T)

// -----

func.func @concat_dims(%a: !tdsl.tensor<[3, P, 64], f32>, %b: !tdsl.tensor<[2, T, 64], f32>) -> !tdsl.tensor<[3, "P+T", 64], f32> {
  %0 = tdsl.concat %a, %b {axis = 1 : i64} : !tdsl.tensor<[3, P, 64], f32>, !tdsl.tensor<[2, T, 64], f32> -> !tdsl.tensor<[3, "P+T", 64], f32>
  func.return %0 : !tdsl.tensor<[3, "P+T", 64], f32>
}
// CHECK: concat along axis 1: dimension 0 differs, 3 in f32[3, P, 64] and 2 in f32[2, T, 64]

// -----

func.func @batch_broadcast(%a: !tdsl.tensor<[3, T, 64], f32>, %b: !tdsl.tensor<[2, 64, S], f32>) -> !tdsl.tensor<[3, T, S], f32> {
  %0 = tdsl.matmul %a, %b : !tdsl.tensor<[3, T, 64], f32>, !tdsl.tensor<[2, 64, S], f32> -> !tdsl.tensor<[3, T, S], f32>
  func.return %0 : !tdsl.tensor<[3, T, S], f32>
}
// CHECK: cannot broadcast dimension 3 with 2

// -----

func.func @concat_result(%a: !tdsl.tensor<[P, 4], f32>, %b: !tdsl.tensor<[T, 4], f32>) -> !tdsl.tensor<["2*P", 4], f32> {
  %0 = tdsl.concat %a, %b {axis = 0 : i64} : !tdsl.tensor<[P, 4], f32>, !tdsl.tensor<[T, 4], f32> -> !tdsl.tensor<["2*P", 4], f32>
  func.return %0 : !tdsl.tensor<["2*P", 4], f32>
}
// CHECK: 'tdsl.concat' result type f32[2*P, 4] does not match inferred f32[P+T, 4]
