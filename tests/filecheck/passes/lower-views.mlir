// RUN: stoicc opt %s -p lower-views | filecheck %s
// Accesses through a contiguous view go to a one-dimensional view of the same
// memory at the row-major linear index, and memref.dim of a view is its size, so
// that no stride of the view is needed once buffers are pointers.

// CHECK-LABEL: func.func @view
// CHECK:         %[[N:.*]] = arith.muli %m, %{{.*}} : index
// CHECK-NEXT:    %[[F:.*]] = memref.reinterpret_cast %x to offset: [%off], sizes: [%[[N]]], strides: [1] : memref<?x?x64xf32> to memref<?xf32>
// CHECK:         %[[R:.*]] = arith.muli %i, %{{.*}} : index
// CHECK-NEXT:    %[[L:.*]] = arith.addi %[[R]], %j : index
// CHECK-NEXT:    %[[V:.*]] = memref.load %[[F]][%[[L]]] : memref<?xf32>
// CHECK:         vector.load %[[F]][%{{.*}}] : memref<?xf32>, vector<16xf32>
// CHECK:         memref.store %[[V]], %[[F]][%{{.*}}] : memref<?xf32>
// CHECK:         "test.op"(%m) : (index) -> ()
// CHECK-NOT:     memref<?x64xf32>
func.func @view(%x: memref<?x?x64xf32>, %off: index, %m: index, %i: index, %j: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %v = memref.reinterpret_cast %x to offset: [%off], sizes: [%m, 64], strides: [%c64, %c1] : memref<?x?x64xf32> to memref<?x64xf32>
  %a = memref.load %v[%i, %j] : memref<?x64xf32>
  %b = vector.load %v[%i, %j] : memref<?x64xf32>, vector<16xf32>
  memref.store %a, %v[%i, %c0] : memref<?x64xf32>
  %d = memref.dim %v, %c0 : memref<?x64xf32>
  "test.op"(%d) : (index) -> ()
  func.return
}
