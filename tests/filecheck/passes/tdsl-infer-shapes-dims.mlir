// RUN: stoicc opt %s -p 'tdsl-infer-shapes{bind="P=4"}' | filecheck %s
// Binding a symbol also binds it in dim expressions (P+T becomes T+4) and in the dims
// that a reshape or a slice names.

// CHECK-LABEL: func.func @f(%x: !tdsl.tensor<["T+4", 8], f32>) -> !tdsl.tensor<[T, 2, 4], f32>
// CHECK-NEXT:    %s = tdsl.slice %x {starts = [#builtin.int<4>, #builtin.int<0>], stops = ["T+4", #builtin.int<8>]} : !tdsl.tensor<["T+4", 8], f32> -> !tdsl.tensor<[T, 8], f32>
// CHECK-NEXT:    %r = tdsl.reshape %s {shape = ["T", #builtin.int<2>, #builtin.int<4>]} : !tdsl.tensor<[T, 8], f32> -> !tdsl.tensor<[T, 2, 4], f32>
func.func @f(%x: !tdsl.tensor<["P+T", 8], f32>) -> !tdsl.tensor<[T, 2, 4], f32> {
  %s = tdsl.slice %x {starts = ["P", #builtin.int<0>], stops = ["P+T", #builtin.int<8>]} : !tdsl.tensor<["P+T", 8], f32> -> !tdsl.tensor<[T, 8], f32>
  %r = tdsl.reshape %s {shape = ["T", #builtin.int<2>, #builtin.int<4>]} : !tdsl.tensor<[T, 8], f32> -> !tdsl.tensor<[T, 2, 4], f32>
  func.return %r : !tdsl.tensor<[T, 2, 4], f32>
}
