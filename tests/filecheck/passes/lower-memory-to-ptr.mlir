// RUN: stoicc opt %s -p lower-memory-to-ptr | filecheck %s
// RUN: stoicc opt %s -p lower-memory-to-ptr,lower-memory-to-ptr{signatures=true} | filecheck %s --check-prefix=SIG

// Scalar and vector accesses become a pointer plus a byte offset (row * stride +
// column, times the element size). Each memref's pointer, row stride and element size
// are made once, after its definition (here the arguments: the function's start), and
// every access of it shares them. The function keeps its memref arguments, cast to
// pointers where used, until the signatures run.
// CHECK-LABEL: func.func @copy(%a: memref<4x8xf32>, %b: memref<4x8xf32>, %i: index, %j: index)
// CHECK-NEXT:    %[[PB:.*]] = ptr_xdsl.to_ptr %b : memref<4x8xf32> -> !ptr_xdsl.ptr
// CHECK-NEXT:    %[[SB:.*]] = arith.constant 8 : index
// CHECK-NEXT:    %[[WB:.*]] = ptr_xdsl.type_offset f32 : index
// CHECK-NEXT:    %[[P:.*]] = ptr_xdsl.to_ptr %a : memref<4x8xf32> -> !ptr_xdsl.ptr
// CHECK-NEXT:    %[[S:.*]] = arith.constant 8 : index
// CHECK-NEXT:    %[[W:.*]] = ptr_xdsl.type_offset f32 : index
// CHECK-NEXT:    %[[R:.*]] = arith.muli %i, %[[S]] : index
// CHECK-NEXT:    %[[E:.*]] = arith.addi %[[R]], %j : index
// CHECK-NEXT:    %[[O:.*]] = arith.muli %[[E]], %[[W]] : index
// CHECK-NEXT:    %[[Q:.*]] = ptr_xdsl.ptradd %[[P]], %[[O]] : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
// CHECK-NEXT:    %x = ptr_xdsl.load %[[Q]] : !ptr_xdsl.ptr -> f32
// CHECK-NEXT:    %[[R2:.*]] = arith.muli %i, %[[SB]] : index
// CHECK-NEXT:    %[[E2:.*]] = arith.addi %[[R2]], %j : index
// CHECK-NEXT:    %[[O2:.*]] = arith.muli %[[E2]], %[[WB]] : index
// CHECK-NEXT:    %[[Q2:.*]] = ptr_xdsl.ptradd %[[PB]], %[[O2]] : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
// CHECK-NEXT:    ptr_xdsl.store %x, %[[Q2]] : f32, !ptr_xdsl.ptr
// CHECK:         %v = ptr_xdsl.load %{{.*}} : !ptr_xdsl.ptr -> vector<4xf32>
// CHECK:         ptr_xdsl.store %v, %{{.*}} : vector<4xf32>, !ptr_xdsl.ptr
// CHECK-NOT:     memref.load
// CHECK-NOT:     vector.load

// The signatures take pointers; casts back to the memref types stand in for the
// arguments until reconcile-unrealized-casts and the pointer lowering remove them.
// SIG-LABEL: func.func @copy(%a: !ptr_xdsl.ptr, %b: !ptr_xdsl.ptr, %i: index, %j: index)
// SIG-NEXT:    %{{.*}} = ptr_xdsl.from_ptr %a : !ptr_xdsl.ptr -> memref<4x8xf32>
func.func @copy(%a: memref<4x8xf32>, %b: memref<4x8xf32>, %i: index, %j: index) {
  %x = memref.load %a[%i, %j] : memref<4x8xf32>
  memref.store %x, %b[%i, %j] : memref<4x8xf32>
  %v = vector.load %a[%i, %j] : memref<4x8xf32>, vector<4xf32>
  vector.store %v, %b[%i, %j] : memref<4x8xf32>, vector<4xf32>
  func.return
}
