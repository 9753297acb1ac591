// RUN: stoicc opt %s -p 'tdsl-microkernel{width=8 rows=2 cols=3},canonicalize,cse' | filecheck %s
// A dense f32 matmul (b stored [k, n]) becomes the outer-product microkernel over its
// whole blocks of rows: a block of `cols` rows x `rows` vectors of columns (3 x 2 of
// <8 x f32> here) is loaded into accumulators, each k step loads the b vectors once and
// broadcasts one a element per row into FMAs, and the block is stored back: no
// reductions. A leftover vector takes 1-vector blocks, and the 4 columns past the last
// whole vector of n = 20 scalar dot products. The rows left (fewer than 3) take the
// streaming form, in groups of 2 then 1: per step of 8 rows of b (a k remainder one at a
// time), each row's 8 elements of a are broadcast once, then each vector of out is
// loaded, takes 8 FMAs with the rows of b loaded once for the group, and is stored;
// per n-tile of n / 2 columns in whole vectors (at most 2048), in a top-level loop that
// ends at 0 where no rows are left (the native pool splits a GEMV's n-tiles).

// CHECK-LABEL: func.func @matmul
// CHECK:         %[[M:.*]] = memref.dim %a
// CHECK:         %[[WHOLE:.*]] = arith.subi %[[M]], %{{.*}} : index
// CHECK:         scf.for %j0 = %{{.*}} to
// CHECK:           memref.store %{{.*}}, %out[%i, %j]
// CHECK:           scf.for %k0 =
// CHECK:             scf.for %i_1 = %{{.*}} to %[[WHOLE]] step %[[THREE:.*]] {
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
// CHECK:             scf.for %i_2 = %{{.*}} to %[[WHOLE]]
// CHECK:                 scf.for %k_2 = {{.*}} -> (f32) {
// CHECK:         %[[VECTORS:.*]] = arith.divui
// CHECK-NEXT:    %[[ONE:.*]] = arith.maxui %[[VECTORS]]
// CHECK-NEXT:    %[[COLUMNS:.*]] = arith.muli %[[ONE]]
// CHECK:         %[[TILE:.*]] = arith.minui %[[COLUMNS]]
// CHECK-NEXT:    %[[LEFT:.*]] = arith.cmpi ugt, %[[M]], %[[WHOLE]] : index
// CHECK-NEXT:    %[[END:.*]] = arith.select %[[LEFT]], %{{.*}}, %{{.*}} : index
// CHECK:         scf.for %[[J0:[a-z0-9_]+]] = %{{.*}} to %[[END]] step %[[TILE]] {
// CHECK-NEXT:      %[[NEXT:.*]] = arith.addi %[[J0]], %[[TILE]] : index
// CHECK-NEXT:      arith.minui %[[NEXT]], %[[END]] : index
// CHECK:         scf.for %i_3 = %[[WHOLE]] to %[[M]]
// CHECK:           memref.store %{{.*}}, %out[%i_3, %j_4]
// CHECK:         scf.for %i_4 = %[[WHOLE]] to %[[PAIRS:.*]] step %[[TWO]] {
// CHECK:           scf.for %k_3 = %{{.*}} to %{{.*}} step %[[EIGHT:.*]] {
// CHECK-COUNT-16:    vector.broadcast
// CHECK-NEXT:        scf.for %j_5 = %{{.*}} to %{{.*}} step %[[EIGHT]] {
// CHECK-COUNT-8:       vector.load %b
// CHECK-NEXT:          vector.load %out[%i_4, %j_5]
// CHECK-COUNT-8:       vector.fma
// CHECK-NEXT:          vector.store %{{.*}}, %out[%i_4, %j_5]
// CHECK-NEXT:          vector.load %out
// CHECK-COUNT-8:       vector.fma
// CHECK-NEXT:          vector.store
// CHECK-NEXT:        }
// CHECK:           scf.for %k_4 =
// CHECK:         scf.for %i_5 = %[[PAIRS]] to %[[M]] step
// CHECK:           scf.for %k_5 = %{{.*}} to %{{.*}} step %[[EIGHT]] {
// CHECK:           scf.for %k_6 =
// CHECK:         scf.for %i_6 = %[[WHOLE]] to %[[M]]
// CHECK:           scf.for %k_7 = {{.*}} -> (f32) {
// CHECK-NOT:     vector.reduction
func.func @matmul(%a: memref<?x5xf32>, %b: memref<5x20xf32>, %out: memref<?x20xf32>) {
  tdsl.matmul %a, %b into %out {tile = array<i64: 16, 16, 4>} : memref<?x5xf32>, memref<5x20xf32> into memref<?x20xf32>
  func.return
}

// A linear with a short static k (8 <= pack_k): its whole groups of 16 rows take the
// outer-product kernel, per n-tile on a [k, 256] panel of w copied transposed (under
// an `if` there are any), the rows left the dot-product kernel, so that a row takes
// the same kernel whether a call is whole or split into row blocks.
// CHECK-LABEL: func.func @short_k
// CHECK:         %[[M:.*]] = memref.dim %x
// CHECK:         %[[WHOLE:.*]] = arith.subi %[[M]], %{{.*}} : index
// CHECK-NEXT:    %[[ANY:.*]] = arith.cmpi ugt, %[[WHOLE]], %{{.*}} : index
// CHECK-NEXT:    scf.if %[[ANY]] {
// CHECK-NEXT:      %[[PANEL:.*]] = memref.alloc() {alignment = 64 : i64} : memref<8x256xf32>
// CHECK:           scf.for %j0 =
// CHECK:             scf.for %j = %j0 to
// CHECK-NEXT:          %[[C:.*]] = arith.subi %j, %j0 : index
// CHECK-NEXT:          scf.for %k =
// CHECK-NEXT:            %[[W:.*]] = memref.load %w[%j, %k] : memref<?x8xf32>
// CHECK-NEXT:            memref.store %[[W]], %[[PANEL]][%k, %[[C]]] : memref<8x256xf32>
// CHECK:             vector.load %out[%i_1, %{{.*}}] : memref<?x?xf32>, vector<8xf32>
// CHECK:             vector.load %[[PANEL]][%k_1, %{{.*}}] : memref<8x256xf32>, vector<8xf32>
// CHECK-NOT:         vector.reduction
// CHECK:           memref.dealloc %[[PANEL]] : memref<8x256xf32>
// CHECK-NEXT:    }
// CHECK:         scf.for %i_4 = %[[WHOLE]] to %[[M]]
// CHECK:           vector.reduction
func.func @short_k(%x: memref<?x8xf32>, %w: memref<?x8xf32>, %out: memref<?x?xf32>) {
  tdsl.linear %x, %w into %out : memref<?x8xf32>, memref<?x8xf32> into memref<?x?xf32>
  func.return
}
