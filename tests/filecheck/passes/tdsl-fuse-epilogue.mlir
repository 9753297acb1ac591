// RUN: stoicc opt %s -p tdsl-fuse-epilogue | filecheck %s
// A bias add and an activation that only consume a matrix product fold into it.

// CHECK-LABEL: func.func @bias_and_relu
// CHECK-NEXT:    %0 = tdsl.linear %x, %w bias %b {act = "relu"} : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 64], f32> bias !tdsl.tensor<[128], f32> -> !tdsl.tensor<[M, 128], f32>
// CHECK-NEXT:    func.return %0
func.func @bias_and_relu(%x: !tdsl.tensor<[M, 64], f32>, %w: !tdsl.tensor<[128, 64], f32>, %b: !tdsl.tensor<[128], f32>) -> !tdsl.tensor<[M, 128], f32> {
  %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 64], f32> -> !tdsl.tensor<[M, 128], f32>
  %1 = tdsl.add %b, %0 : !tdsl.tensor<[128], f32>, !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  %2 = tdsl.relu %1 : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  func.return %2 : !tdsl.tensor<[M, 128], f32>
}

// A product that is also returned keeps its own value: nothing fuses.
// CHECK-LABEL: func.func @shared
// CHECK:         tdsl.matmul %x, %y :
// CHECK-NEXT:    tdsl.gelu
func.func @shared(%x: !tdsl.tensor<[4, 4], f32>, %y: !tdsl.tensor<[4, 4], f32>) -> (!tdsl.tensor<[4, 4], f32>, !tdsl.tensor<[4, 4], f32>) {
  %0 = tdsl.matmul %x, %y : !tdsl.tensor<[4, 4], f32>, !tdsl.tensor<[4, 4], f32> -> !tdsl.tensor<[4, 4], f32>
  %1 = tdsl.gelu %0 : !tdsl.tensor<[4, 4], f32> -> !tdsl.tensor<[4, 4], f32>
  func.return %0, %1 : !tdsl.tensor<[4, 4], f32>, !tdsl.tensor<[4, 4], f32>
}

// An add that widens the product (here [M, 1] + [M, 8]) is not a bias; exp is not an activation.
// CHECK-LABEL: func.func @not_epilogues
// CHECK:         tdsl.matmul %x, %y :
// CHECK-NEXT:    tdsl.add
// CHECK-NEXT:    tdsl.exp
func.func @not_epilogues(%x: !tdsl.tensor<[M, 4], f32>, %y: !tdsl.tensor<[4, 1], f32>, %z: !tdsl.tensor<[M, 8], f32>) -> !tdsl.tensor<[M, 8], f32> {
  %0 = tdsl.matmul %x, %y : !tdsl.tensor<[M, 4], f32>, !tdsl.tensor<[4, 1], f32> -> !tdsl.tensor<[M, 1], f32>
  %1 = tdsl.add %0, %z : !tdsl.tensor<[M, 1], f32>, !tdsl.tensor<[M, 8], f32> -> !tdsl.tensor<[M, 8], f32>
  %2 = tdsl.exp %1 : !tdsl.tensor<[M, 8], f32> -> !tdsl.tensor<[M, 8], f32>
  func.return %2 : !tdsl.tensor<[M, 8], f32>
}
