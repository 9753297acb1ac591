// RUN: stoicc opt %s -p 'tdsl-microkernel{width=8 rows=2 cols=2 pack_k=0},canonicalize,cse' | filecheck %s
// Dense f32 linear products become register-blocked vector microkernels.

// n-tiles of 4 weight rows (whole 2-column blocks), k-tiles of 16; a 2x2 block of
// <8 x f32> accumulators, one vector.fma per (x row, w row) pair, reduced once per
// k-tile; k = 20 is ragged, so a scalar tail finishes each k-tile. The ragged
// edges of m and n get 2x1, 1x2 and 1x1 kernels; bias + relu run per n-tile.
// A call of one row (the scf.if: M = 1) runs each column block's k-tiles one after
// another instead, so that the block reads its weight rows whole (the same sums in the
// same order); more rows run every block of a k-tile before the next k-tile.
// CHECK-LABEL: func.func @linear
// CHECK:         scf.for %j0 = %{{.*}} to %{{.*}} step %[[FOUR:.*]] {
// CHECK:           memref.store %{{.*}}, %out[%i, %j]
// CHECK:           %[[ONE_ROW:.*]] = arith.cmpi eq, %{{.*}}, %{{.*}} : index
// CHECK-NEXT:      scf.if %[[ONE_ROW]] {
// CHECK:             scf.for %i_1 =
// CHECK:               scf.for %j_1 = %j0 to %{{.*}} step %{{.*}} {
// CHECK-NEXT:            scf.for %k0 =
// CHECK:                   scf.for %k = %k0 to %{{.*}} step %{{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>) {
// CHECK:                   memref.store %{{.*}}, %out[%i_1, %j_1]
// CHECK:               scf.for %j_2 =
// CHECK-NEXT:            scf.for %k0_1 =
// CHECK:                   scf.for %k_2 = {{.*}} -> (vector<8xf32>) {
// CHECK:           } else {
// CHECK:             scf.for %k0_2 =
// CHECK:               scf.for %i_2 = %{{.*}} to %{{.*}} step %[[TWO:.*]] {
// CHECK:                 scf.for %j_3 = %j0 to %{{.*}} step %[[TWO]] {
// CHECK:                   %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} = scf.for %k_4 = %k0_2 to %{{.*}} step %{{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK-NEXT:                %[[X0:.*]] = vector.load %x[%i_2, %k_4] : memref<?x20xf32>, vector<8xf32>
// CHECK-NEXT:                %[[X1:.*]] = vector.load %x[%{{.*}}, %k_4] : memref<?x20xf32>, vector<8xf32>
// CHECK-NEXT:                %[[W0:.*]] = vector.load %w[%j_3, %k_4] : memref<6x20xf32>, vector<8xf32>
// CHECK-NEXT:                vector.fma %[[X0]], %[[W0]], %{{.*}} : vector<8xf32>
// CHECK-NEXT:                vector.fma %[[X1]], %[[W0]], %{{.*}} : vector<8xf32>
// CHECK-NEXT:                %[[W1:.*]] = vector.load %w[%{{.*}}, %k_4] : memref<6x20xf32>, vector<8xf32>
// CHECK-NEXT:                vector.fma %[[X0]], %[[W1]], %{{.*}} : vector<8xf32>
// CHECK-NEXT:                vector.fma %[[X1]], %[[W1]], %{{.*}} : vector<8xf32>
// CHECK-NEXT:                scf.yield
// CHECK-COUNT-4:           vector.reduction <add>, %{{.*}} fastmath<fast> : vector<8xf32> into f32
// CHECK:                   scf.for %k_5 = %{{.*}} to %{{.*}} step %{{.*}} iter_args({{.*}}) -> (f32, f32, f32, f32) {
// CHECK:                   memref.load %out[%i_2, %j_3]
// CHECK:                 scf.for %j_4 =
// CHECK:                   scf.for %k_6 = {{.*}} -> (vector<8xf32>, vector<8xf32>) {
// CHECK:               scf.for %i_3 =
// CHECK:                 scf.for %j_5 =
// CHECK:                 scf.for %j_6 =
// CHECK:                   scf.for %k_10 = {{.*}} -> (vector<8xf32>) {
// CHECK:           memref.load %b
// CHECK:           arith.maximumf
func.func @linear(%x: memref<?x20xf32>, %w: memref<6x20xf32>, %b: memref<6xf32>, %out: memref<?x6xf32>, %M: index) {
  tdsl.linear %x, %w bias %b into %out {act = "relu", tile = array<i64: 16, 4, 16>} : memref<?x20xf32>, memref<6x20xf32> bias memref<6xf32> into memref<?x6xf32>
  func.return
}

// k = 32 is a whole number of vectors and k-tiles: no scalar tail.
// CHECK-LABEL: func.func @whole
// CHECK-NOT:     -> (f32, f32, f32, f32)
// CHECK:         func.return
func.func @whole(%x: memref<?x32xf32>, %w: memref<4x32xf32>, %out: memref<?x4xf32>, %M: index) {
  tdsl.linear %x, %w into %out {tile = array<i64: 16, 4, 16>} : memref<?x32xf32>, memref<4x32xf32> into memref<?x4xf32>
  func.return
}

// Integer products are left to tdsl-lower-to-loops.
// CHECK-LABEL: func.func @integer
// CHECK-NEXT:    tdsl.linear %x, %w into %out
func.func @integer(%x: memref<?x32xi8>, %w: memref<8x32xi8>, %out: memref<?x8xi32>, %M: index) {
  tdsl.linear %x, %w into %out {tile = array<i64: 16, 48, 1024>} : memref<?x32xi8>, memref<8x32xi8> into memref<?x8xi32>
  func.return
}
