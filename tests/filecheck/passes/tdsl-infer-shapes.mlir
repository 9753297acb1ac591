// RUN: stoicc opt %s -p 'tdsl-infer-shapes{bind="M=16"}' | filecheck %s
// RUN: stoicc opt %s -p tdsl-infer-shapes | filecheck %s --check-prefix=SAME
// Binding a size symbol makes it static in the parameters, and the new shapes
// flow through every op to the signature. Unbound, the module is unchanged.

// CHECK-LABEL: func.func @infer(%x: !tdsl.tensor<[16, 64], f32>, %w: !tdsl.tensor<[128, 64], f32>) -> !tdsl.tensor<[16], f32>
// CHECK-NEXT:    %0 = tdsl.linear %x, %w : !tdsl.tensor<[16, 64], f32>, !tdsl.tensor<[128, 64], f32> -> !tdsl.tensor<[16, 128], f32>
// CHECK-NEXT:    %1 = tdsl.sum %0 {axis = 1 : i64} : !tdsl.tensor<[16, 128], f32> -> !tdsl.tensor<[16], f32>
// CHECK-NEXT:    func.return %1 : !tdsl.tensor<[16], f32>
// SAME-LABEL:  func.func @infer(%x: !tdsl.tensor<[M, 64], f32>, %w: !tdsl.tensor<[128, 64], f32>) -> !tdsl.tensor<[M], f32>
func.func @infer(%x: !tdsl.tensor<[M, 64], f32>, %w: !tdsl.tensor<[128, 64], f32>) -> !tdsl.tensor<[M], f32> {
  %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 64], f32> -> !tdsl.tensor<[M, 128], f32>
  %1 = tdsl.sum %0 {axis = 1 : i64} : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M], f32>
  func.return %1 : !tdsl.tensor<[M], f32>
}
