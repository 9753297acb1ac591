// RUN: stoicc opt %s -p tdsl-lower-to-loops,canonicalize,cse | filecheck %s
// Bufferized ops become scf loop nests.

// A tiled linear with a fused epilogue: row tiles of 16, column tiles of 64, k
// tiles of 256; each output tile is zeroed, accumulated k-tile by k-tile with a
// reassociable dot product along contiguous k, then gets bias + relu once.
// CHECK-LABEL: func.func @linear
// CHECK:         scf.for %i0 = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:           scf.for %j0 = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:             scf.for %i = %i0 to %{{.*}} step
// CHECK:               scf.for %j = %j0 to %{{.*}} step
// CHECK:                 memref.store %{{.*}}, %out[%i, %j]
// CHECK:             scf.for %k0 = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:               scf.for %k = %k0{{.*}} to %{{.*}} step %{{.*}} iter_args(%{{.*}} = %{{.*}}) -> (f32) {
// CHECK:                 %{{.*}} = memref.load %x[%i{{.*}}, %k]
// CHECK:                 %{{.*}} = memref.load %w[%j{{.*}}, %k]
// CHECK:                 arith.mulf %{{.*}}, %{{.*}} fastmath<fast> : f32
// CHECK:                 arith.addf %{{.*}}, %{{.*}} fastmath<fast> : f32
// CHECK:             scf.for %i{{.*}} = %i0
// CHECK:               scf.for %j{{.*}} = %j0
// CHECK:                 %[[B:.*]] = memref.load %b[%j{{.*}}]
// CHECK:                 %[[S:.*]] = arith.addf %{{.*}}, %[[B]] : f32
// CHECK:                 arith.maximumf %[[S]], %{{.*}} : f32
func.func @linear(%x: memref<?x512xf32>, %w: memref<128x512xf32>, %b: memref<128xf32>, %out: memref<?x128xf32>, %M: index) {
  tdsl.linear %x, %w bias %b into %out {act = "relu", tile = array<i64: 16, 64, 256>} : memref<?x512xf32>, memref<128x512xf32> bias memref<128xf32> into memref<?x128xf32>
  func.return
}

// Elementwise ops broadcast by indexing: the [4] operand is read at the inner index.
// CHECK-LABEL: func.func @broadcast
// CHECK:         scf.for %i = %{{.*}} to %{{.*}} step
// CHECK-NEXT:      scf.for %j = %{{.*}} to %{{.*}} step
// CHECK-NEXT:        %[[A:.*]] = memref.load %a[%i, %j] : memref<?x4xf32>
// CHECK-NEXT:        %[[B:.*]] = memref.load %b[%j{{.*}}] : memref<4xf32>
// CHECK-NEXT:        %[[S:.*]] = arith.subf %[[A]], %[[B]] : f32
// CHECK-NEXT:        memref.store %[[S]], %o[%i, %j] : memref<?x4xf32>
func.func @broadcast(%a: memref<?x4xf32>, %b: memref<4xf32>, %o: memref<?x4xf32>) {
  tdsl.sub %a, %b into %o : memref<?x4xf32>, memref<4xf32> into memref<?x4xf32>
  func.return
}

// A row softmax: max, then exp and sum, then scale by the reciprocal.
// CHECK-LABEL: func.func @softmax
// CHECK:         scf.for %i =
// CHECK:           scf.for %k{{.*}} = {{.*}} iter_args
// CHECK:             arith.maximumf
// CHECK:           scf.for %k{{.*}} = {{.*}} iter_args
// CHECK:             math.exp
// CHECK:             arith.addf {{.*}} fastmath<fast>
// CHECK:           arith.divf
// CHECK:           scf.for %k{{.*}} =
// CHECK:             arith.mulf
func.func @softmax(%a: memref<?x8xf32>, %o: memref<?x8xf32>) {
  tdsl.softmax %a into %o {axis = 1 : i64} : memref<?x8xf32> into memref<?x8xf32>
  func.return
}

// A reduction over axis 0 keeps the other index outside.
// CHECK-LABEL: func.func @sum
// CHECK:         scf.for %i = %{{.*}} to %{{.*}} step
// CHECK:           %{{.*}} = scf.for %k = {{.*}} iter_args
// CHECK-NEXT:        memref.load %a[%k, %i]
func.func @sum(%a: memref<?x8xf32>, %o: memref<8xf32>) {
  tdsl.sum %a into %o {axis = 0 : i64} : memref<?x8xf32> into memref<8xf32>
  func.return
}
