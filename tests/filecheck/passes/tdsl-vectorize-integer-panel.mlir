// RUN: stoicc opt %s -p 'tdsl-vectorize-integer{vnni=true width=4 rows=2 cols=2 row_cols=4 panel_rows=2 panel_cols=2},canonicalize,cse' | filecheck %s
// With VNNI, an integer product whose k is whole steps (here 2 of 16 bytes) runs the
// whole 2-row blocks (ROWS) of calls of 16 rows or more in PanelKernel's outer-product
// blocks; its n-tile loop runs to N where there are such rows, else to 0 (a GEMV runs no
// n-tile and allocates nothing), each n-tile with its own scratch and its stores on its own
// columns (so that mark-parallel-loops proves the tiles independent). Per n-tile (4
// column blocks of 2 vectors: 32 columns), the weight's rows are packed as w + 128 (xor
// -128) into a panel [k/4, 32] of i32: a step of 4 rows, transposed by shuffles so that
// panel[q, c] holds w[c, 4q..4q+3]; the rows past w's last (N = 9: the third vector's 1 and
// 3 more) read the last row. A 2-row x 2-vector block, over the columns in whole blocks
// (8 of 9), steps by two panel loads, one broadcast dword of each row of x and one vpdpbusd
// per accumulator, which holds whole outputs, stored raw into panel_sums; then a loop over
// the block's rows subtracts each row's 128 * sum_k x and stores its 8 columns (out's own
// columns, a constant width: LLVM unrolls it). The ragged third vector takes a 2-row x
// 1-vector block computed whole, whose rows store the columns up to the tile's end (1),
// one at a time. No reduction, and no dot-product block for the panel's rows.
// CHECK-LABEL: func.func @panel
// CHECK:         %[[GO:.*]] = arith.cmpi uge, %{{.*}}, %{{.*}} : index
// CHECK:         %[[ROWS:.*]] = arith.select %[[GO]], %{{.*}}, %{{.*}} : index
// CHECK-NEXT:    %[[END:.*]] = arith.select %[[GO]], %{{.*}}, %{{.*}} : index
// CHECK:         %[[LAST:.*]] = arith.constant 8 : index
// CHECK:         %[[FLIP:.*]] = arith.constant dense<-128> : vector<16xi8>
// CHECK-NEXT:    scf.for %j0 = %{{.*}} to %[[END]] step %{{.*}} {
// CHECK-NEXT:      %panel = memref.alloc() {alignment = 64 : i64} : memref<8x32xi32>
// CHECK-NEXT:      %panel_sums = memref.alloc() {alignment = 64 : i64} : memref<2x8xi32>
// CHECK:           %[[J1:.*]] = arith.minui %{{.*}}, %[[END]] : index
// CHECK:           scf.for %j = %j0 to %[[J1]] step %{{.*}} {
// CHECK-NEXT:        %[[C:.*]] = arith.subi %j, %j0 : index
// CHECK-NEXT:        scf.for %k_1 =
// CHECK-NEXT:          %[[Q0:.*]] = arith.divui %k_1, %{{.*}} : index
// CHECK-NEXT:          %[[R0:.*]] = arith.minui %j, %[[LAST]] : index
// CHECK-NEXT:          %[[W0:.*]] = vector.load %w[%[[R0]], %k_1] : memref<9x32xi8>, vector<16xi8>
// CHECK-NEXT:          arith.xori %[[W0]], %[[FLIP]] : vector<16xi8>
// CHECK-COUNT-3:       arith.minui %{{.*}}, %[[LAST]] : index
// CHECK-COUNT-8:       vector.shuffle
// CHECK-NEXT:          vector.store %{{.*}}, %panel[%[[Q0]], %[[C]]] : memref<8x32xi32>, vector<4xi32>
// CHECK-COUNT-3:       vector.store %{{.*}}, %panel
// CHECK:           %[[WHOLE:.*]] = arith.subi %[[J1]], %{{.*}} : index
// CHECK:           %[[VECTORS:.*]] = arith.addi %j0, %{{.*}} : index
// CHECK-NEXT:      scf.for %i_1 = %{{.*}} to %[[ROWS]] step %[[TWO:.*]] {
// CHECK-NEXT:        scf.for %j_1 = %j0 to %[[WHOLE]] step %{{.*}} {
// CHECK-NEXT:          %[[COL:.*]] = arith.subi %j_1, %j0 : index
// CHECK:               %[[A0:.*]], %{{.*}}, %{{.*}}, %{{.*}} = scf.for %q = {{.*}} -> (vector<4xi32>, vector<4xi32>, vector<4xi32>, vector<4xi32>) {
// CHECK-NEXT:            %[[P:.*]] = vector.load %panel[%q, %[[COL]]] : memref<8x32xi32>, vector<4xi32>
// CHECK-NEXT:            vector.load %panel
// CHECK-NEXT:            %[[K:.*]] = arith.muli %q, %{{.*}} : index
// CHECK-NEXT:            vector.load %x[%i_1, %[[K]]] : memref<?x32xi8>, vector<4xi8>
// CHECK-NEXT:            vector.bitcast %{{.*}} : vector<4xi8> to vector<1xi32>
// CHECK-NEXT:            vector.extract
// CHECK-NEXT:            %[[X0:.*]] = vector.broadcast %{{.*}} : i32 to vector<4xi32>
// CHECK-NEXT:            vector.load %x
// CHECK-NEXT:            vector.bitcast
// CHECK-NEXT:            vector.extract
// CHECK-NEXT:            vector.broadcast
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.128"(%{{.*}}, %[[P]], %[[X0]])
// CHECK-COUNT-3:         llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.128"
// CHECK-NEXT:            scf.yield
// CHECK:               vector.store %[[A0]], %panel_sums[%{{.*}}, %{{.*}}] : memref<2x8xi32>, vector<4xi32>
// CHECK-COUNT-3:       vector.store %{{.*}}, %panel_sums
// CHECK:               scf.for %r = %{{.*}} to %[[TWO]] step
// CHECK-NEXT:            %[[ROW:.*]] = arith.addi %i_1, %r : index
// CHECK-NEXT:            %[[OFF:.*]] = memref.load %row_offsets[%[[ROW]], %{{.*}}] : memref<?x1xi32>
// CHECK-NEXT:            %[[BLOCK_END:.*]] = arith.addi %j_1, %{{.*}} : index
// CHECK-NEXT:            scf.for %[[JW:.*]] = %j_1 to %[[BLOCK_END]] step
// CHECK-NEXT:              %[[AT:.*]] = arith.subi %[[JW]], %j_1 : index
// CHECK-NEXT:              %[[SUM:.*]] = vector.load %panel_sums[%r, %[[AT]]] : memref<2x8xi32>, vector<4xi32>
// CHECK-NEXT:              %[[OFFS:.*]] = vector.broadcast %[[OFF]] : i32 to vector<4xi32>
// CHECK-NEXT:              %[[OUT:.*]] = arith.subi %[[SUM]], %[[OFFS]] : vector<4xi32>
// CHECK-NEXT:              vector.store %[[OUT]], %out[%[[ROW]], %[[JW]]] : memref<?x9xi32>, vector<4xi32>
// CHECK:             scf.for %[[JE:.*]] = %[[WHOLE]] to %[[VECTORS]] step
// CHECK:               scf.for %q_1 = {{.*}} -> (vector<4xi32>, vector<4xi32>) {
// CHECK:               %[[NEXT:.*]] = arith.addi %[[JE]], %{{.*}} : index
// CHECK-NEXT:          %[[EDGE:.*]] = arith.minui %[[NEXT]], %[[J1]] : index
// CHECK:               scf.for %r_1 =
// CHECK:                 scf.for %{{.*}} = %[[JE]] to %[[EDGE]] step
// CHECK:                   vector.store %{{.*}}, %out[%{{.*}}, %{{.*}}] : memref<?x9xi32>, vector<1xi32>
// CHECK:           memref.dealloc %panel : memref<8x32xi32>
// CHECK-NEXT:      memref.dealloc %panel_sums : memref<2x8xi32>
// The rows from ROWS on (all of a call below 16 rows) take the dot-product blocks.
// CHECK:         scf.for %j0_1 =
// CHECK:           scf.for %i_2 = %[[ROWS]] to
func.func @panel(%x: memref<?x32xi8>, %w: memref<9x32xi8>, %out: memref<?x9xi32>, %M: index) {
  tdsl.linear %x, %w into %out {tile = array<i64: 16, 4, 1024>} : memref<?x32xi8>, memref<9x32xi8> into memref<?x9xi32>
  func.return
}
