// RUN: stoicc opt %s -p 'tdsl-microkernel{width=8 rows=2 cols=3},canonicalize,cse' | filecheck %s
// A dense f32 matmul (b stored [k, n]) becomes the outer-product microkernel: a block
// of `cols` rows x `rows` vectors of columns (3 x 2 of <8 x f32> here) is loaded into
// accumulators, each k step loads the b vectors once and broadcasts one a element per
// row into FMAs, and the block is stored back: no reductions. Ragged rows take
// 1-row blocks, a leftover vector 1-vector blocks, and the 4 columns past the last
// whole vector of n = 20 scalar dot products.

// CHECK-LABEL: func.func @matmul
// CHECK:         scf.for %j0 =
// CHECK:           memref.store %{{.*}}, %out[%i, %j]
// CHECK:           scf.for %k0 =
// CHECK:             scf.for %i_1 = %{{.*}} to %{{.*}} step %[[THREE:.*]] {
// CHECK:               scf.for %j_1 = %{{.*}} to %{{.*}} step %[[TWO:.*]] {
// CHECK-COUNT-6:         vector.load %out
// CHECK:                 scf.for %k = %k0 to %{{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK-NEXT:              %[[B0:.*]] = vector.load %b[%k, %{{.*}}] : memref<5x20xf32>, vector<8xf32>
// CHECK-NEXT:              %[[B1:.*]] = vector.load %b[%k, %{{.*}}] : memref<5x20xf32>, vector<8xf32>
// CHECK-NEXT:              %[[A0:.*]] = memref.load %a[%i_1, %k] : memref<?x5xf32>
// CHECK-NEXT:              %[[X0:.*]] = vector.broadcast %[[A0]] : f32 to vector<8xf32>
// CHECK-COUNT-2:           vector.broadcast
// CHECK-NEXT:              vector.fma %[[X0]], %[[B0]], %{{.*}} : vector<8xf32>
// CHECK-COUNT-2:           vector.fma
// CHECK-NEXT:              vector.fma %[[X0]], %[[B1]], %{{.*}} : vector<8xf32>
// CHECK-NOT:             vector.reduction
// CHECK-COUNT-6:         vector.store {{.*}}, %out
// CHECK:               scf.for %j_2 =
// CHECK:                 scf.for %k_1 = {{.*}} -> (vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK:             scf.for %i_2 =
// CHECK:             scf.for %i_3 =
// CHECK-NEXT:          scf.for %j_5 =
// CHECK:                 scf.for %k_4 = {{.*}} -> (f32) {
func.func @matmul(%a: memref<?x5xf32>, %b: memref<5x20xf32>, %out: memref<?x20xf32>) {
  tdsl.matmul %a, %b into %out {tile = array<i64: 16, 16, 4>} : memref<?x5xf32>, memref<5x20xf32> into memref<?x20xf32>
  func.return
}
