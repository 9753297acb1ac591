// RUN: stoicc opt %s -p 'tdsl-vectorize-elementwise{width=8},canonicalize' | filecheck %s
// f32 elementwise ops, innermost-axis reductions and softmax become vector loops of
// `width` lanes along the innermost axis and a scalar tail; other ops are left alone.

// An operand broadcast along the innermost axis is loaded once and splat.
// CHECK-LABEL: func.func @mul
// CHECK:       scf.for %i
// CHECK:         %[[END:.*]] = arith.subi
// CHECK:         scf.for %j = %{{.*}} to %[[END]] step %{{.*}}
// CHECK:           vector.load %x[%i, %j] : memref<?x?xf32>, vector<8xf32>
// CHECK:           vector.broadcast {{.*}} : f32 to vector<8xf32>
// CHECK:           arith.mulf {{.*}} : vector<8xf32>
// CHECK:           vector.store
// CHECK:         scf.for %[[J:.*]] = %[[END]] to
// CHECK:           memref.load %x[%i, %[[J]]]
// CHECK:           arith.mulf {{.*}} : f32
// CHECK:           memref.store
func.func @mul(%x: memref<?x?xf32>, %s: memref<?x1xf32>, %out: memref<?x?xf32>) {
  tdsl.mul %x, %s into %out : memref<?x?xf32>, memref<?x1xf32> into memref<?x?xf32>
  func.return
}

// A keepdims mean: a vector accumulator, reduced across lanes, then the tail, then / n.
// CHECK-LABEL: func.func @mean
// CHECK:         scf.for %j = {{.*}} iter_args({{.*}} = %{{.*}}) -> (vector<8xf32>)
// CHECK:           arith.addf {{.*}} fastmath<fast> : vector<8xf32>
// CHECK:         vector.reduction <add>
// CHECK:         scf.for %j{{.*}} -> (f32)
// CHECK:         arith.divf
// CHECK:         memref.store {{.*}}, %out[%i, %{{.*}}] : memref<?x1xf32>
func.func @mean(%x: memref<?x?xf32>, %out: memref<?x1xf32>) {
  tdsl.mean %x into %out {axis = 1 : i64, keepdims} : memref<?x?xf32> into memref<?x1xf32>
  func.return
}

// Softmax: a max sweep (vector.reduction <maximumf>), an exp sweep with the polynomial
// (no math.exp call), a scale sweep.
// CHECK-LABEL: func.func @softmax
// CHECK:         vector.reduction <maximumf>
// CHECK-NOT:     math.exp
// CHECK:         math.roundeven {{.*}} : vector<8xf32>
// CHECK:         vector.reduction <add>
// CHECK:         arith.mulf {{.*}} : vector<8xf32>
func.func @softmax(%x: memref<?x?xf32>, %out: memref<?x?xf32>) {
  tdsl.softmax %x into %out {axis = 1 : i64} : memref<?x?xf32> into memref<?x?xf32>
  func.return
}

// Not along the innermost axis, on integers, or a libm function: left for tdsl-lower-to-loops.
// CHECK-LABEL: func.func @left_alone
// CHECK-NEXT:    tdsl.sum
// CHECK-NEXT:    tdsl.add
// CHECK-NEXT:    tdsl.tanh
func.func @left_alone(%x: memref<?x8xf32>, %s: memref<8xf32>, %i: memref<4xi32>, %t: memref<?x8xf32>) {
  tdsl.sum %x into %s {axis = 0 : i64} : memref<?x8xf32> into memref<8xf32>
  tdsl.add %i, %i into %i : memref<4xi32>, memref<4xi32> into memref<4xi32>
  tdsl.tanh %x into %t : memref<?x8xf32> into memref<?x8xf32>
  func.return
}
