// RUN: stoicc opt %s -p tdsl-fold-transpose | filecheck %s
// matmul(x, transpose(w)) reads w in place as linear(x, w); the transpose goes away
// when nothing else needs it.

// CHECK-LABEL: func.func @fold
// CHECK-NEXT:    %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 64], f32> -> !tdsl.tensor<[M, 128], f32>
// CHECK-NEXT:    func.return %0
func.func @fold(%x: !tdsl.tensor<[M, 64], f32>, %w: !tdsl.tensor<[128, 64], f32>) -> !tdsl.tensor<[M, 128], f32> {
  %t = tdsl.transpose %w : !tdsl.tensor<[128, 64], f32> -> !tdsl.tensor<[64, 128], f32>
  %0 = tdsl.matmul %x, %t : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[64, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  func.return %0 : !tdsl.tensor<[M, 128], f32>
}

// CHECK-LABEL: func.func @unfold
// CHECK-NEXT:    %0 = tdsl.matmul %x, %w : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[64, 128], f32> -> !tdsl.tensor<[M, 128], f32>
func.func @unfold(%x: !tdsl.tensor<[M, 64], f32>, %w: !tdsl.tensor<[64, 128], f32>) -> !tdsl.tensor<[M, 128], f32> {
  %t = tdsl.transpose %w : !tdsl.tensor<[64, 128], f32> -> !tdsl.tensor<[128, 64], f32>
  %0 = tdsl.linear %x, %t : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 64], f32> -> !tdsl.tensor<[M, 128], f32>
  func.return %0 : !tdsl.tensor<[M, 128], f32>
}

// The transpose stays when it is also returned.
// CHECK-LABEL: func.func @shared
// CHECK:         %t = tdsl.transpose %w
// CHECK:         tdsl.linear %x, %w
func.func @shared(%x: !tdsl.tensor<[M, 64], f32>, %w: !tdsl.tensor<[128, 64], f32>) -> (!tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[64, 128], f32>) {
  %t = tdsl.transpose %w : !tdsl.tensor<[128, 64], f32> -> !tdsl.tensor<[64, 128], f32>
  %0 = tdsl.matmul %x, %t : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[64, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  func.return %0, %t : !tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[64, 128], f32>
}

// A batched product reads a transposed batch of keys in place too; a permutation of
// other axes than the last two is no swap of the product's operand and stays.
// CHECK-LABEL: func.func @batched
// CHECK-NEXT:    %[[S:.*]] = tdsl.linear %q, %k : !tdsl.tensor<[3, T, 8], f32>, !tdsl.tensor<[3, S, 8], f32> -> !tdsl.tensor<[3, T, S], f32>
// CHECK-NEXT:    %[[P:.*]] = tdsl.transpose %v {perm = array<i64: 1, 0, 2>}
// CHECK-NEXT:    tdsl.matmul %[[S]], %[[P]]
func.func @batched(%q: !tdsl.tensor<[3, T, 8], f32>, %k: !tdsl.tensor<[3, S, 8], f32>, %v: !tdsl.tensor<[S, 3, 8], f32>) -> !tdsl.tensor<[3, T, 8], f32> {
  %kt = tdsl.transpose %k : !tdsl.tensor<[3, S, 8], f32> -> !tdsl.tensor<[3, 8, S], f32>
  %s = tdsl.matmul %q, %kt : !tdsl.tensor<[3, T, 8], f32>, !tdsl.tensor<[3, 8, S], f32> -> !tdsl.tensor<[3, T, S], f32>
  %vp = tdsl.transpose %v {perm = array<i64: 1, 0, 2>} : !tdsl.tensor<[S, 3, 8], f32> -> !tdsl.tensor<[3, S, 8], f32>
  %o = tdsl.matmul %s, %vp : !tdsl.tensor<[3, T, S], f32>, !tdsl.tensor<[3, S, 8], f32> -> !tdsl.tensor<[3, T, 8], f32>
  func.return %o : !tdsl.tensor<[3, T, 8], f32>
}
