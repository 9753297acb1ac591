// RUN: stoicc opt %s -p tdsl-unbatch | filecheck %s
// A batched product becomes a loop over its batch of 2-D products on contiguous
// views of each batch (no copy); a size-1 batch dim broadcasts (its view does not
// move with that loop); a rank-2 rhs multiplies the rows of every batch at once.

// CHECK-LABEL: func.func @attention
// CHECK:       scf.for %b = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:         %[[S:.*]] = memref.reinterpret_cast %s to offset: [%{{.*}}], sizes: [%{{.*}}, %{{.*}}], strides: [%{{.*}}, %{{.*}}] : memref<9x?x?xf32> to memref<?x?xf32>
// CHECK:         %[[V:.*]] = memref.reinterpret_cast %v to offset: [%{{.*}}], sizes: [%{{.*}}, 64], strides: [%{{.*}}, %{{.*}}] : memref<9x?x64xf32> to memref<?x64xf32>
// CHECK:         %[[O:.*]] = memref.reinterpret_cast %out to offset: [%{{.*}}], sizes: [%{{.*}}, 64], strides: [%{{.*}}, %{{.*}}] : memref<9x?x64xf32> to memref<?x64xf32>
// CHECK-NEXT:    tdsl.matmul %[[S]], %[[V]] into %[[O]] : memref<?x?xf32>, memref<?x64xf32> into memref<?x64xf32>
// CHECK-NEXT:  }
func.func @attention(%s: memref<9x?x?xf32>, %v: memref<9x?x64xf32>, %out: memref<9x?x64xf32>) {
  tdsl.matmul %s, %v into %out : memref<9x?x?xf32>, memref<9x?x64xf32> into memref<9x?x64xf32>
  func.return
}

// The rhs's batch dims [3, 1]: its offset takes the first batch index only.
// CHECK-LABEL: func.func @broadcast
// CHECK:       scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:         scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:           arith.addi %{{.*}}, %[[J]] : index
// CHECK:           memref.reinterpret_cast %a
// CHECK-NOT:       %[[J]]
// CHECK:           memref.reinterpret_cast %b {{.*}} to memref<64x?xf32>
// CHECK:           arith.addi %{{.*}}, %[[J]] : index
// CHECK:           memref.reinterpret_cast %out
// CHECK-NEXT:      tdsl.matmul
func.func @broadcast(%a: memref<3x3x?x64xf32>, %b: memref<3x1x64x?xf32>, %out: memref<3x3x?x?xf32>) {
  tdsl.matmul %a, %b into %out : memref<3x3x?x64xf32>, memref<3x1x64x?xf32> into memref<3x3x?x?xf32>
  func.return
}

// CHECK-LABEL: func.func @rows
// CHECK-NOT:   scf.for
// CHECK:       %[[X:.*]] = memref.reinterpret_cast %x to offset: [%{{.*}}], sizes: [%{{.*}}, 64], strides: [%{{.*}}, %{{.*}}] : memref<9x?x64xf32> to memref<?x64xf32>
// CHECK:       %[[O:.*]] = memref.reinterpret_cast %out {{.*}} to memref<?x32xf32>
// CHECK-NEXT:  tdsl.linear %[[X]], %w into %[[O]] : memref<?x64xf32>, memref<32x64xf32> into memref<?x32xf32>
func.func @rows(%x: memref<9x?x64xf32>, %w: memref<32x64xf32>, %out: memref<9x?x32xf32>) {
  tdsl.linear %x, %w into %out : memref<9x?x64xf32>, memref<32x64xf32> into memref<9x?x32xf32>
  func.return
}
