// RUN: stoicc opt %s -p tdsl-lower-to-loops,canonicalize,cse | filecheck %s
// A linear layer with a packed weight iterates only the stored entries: for each
// stored value it updates the rows of the current row block.

// 2:4: slot s of row r is at column (s / 2) * 4 + its 2-bit index, read from word
// s / 16 at bit (s % 16) * 2.
// CHECK-LABEL: func.func @nm
// CHECK:         scf.for %i0 =
// CHECK:           scf.for %r =
// CHECK-NEXT:        scf.for %s =
// CHECK:               %[[WORD:.*]] = memref.load %w_indices[%r, %{{.*}}] : memref<8x1xi32>
// CHECK:               %[[SHIFTED:.*]] = arith.shrui %[[WORD]], %{{.*}} : i32
// CHECK-NEXT:          %[[FIELD:.*]] = arith.andi %[[SHIFTED]], %{{.*}} : i32
// CHECK:               %[[V:.*]] = memref.load %w_values[%r, %s] : memref<8x8xf32>
// CHECK-NEXT:          scf.for %i{{.*}} =
// CHECK-NEXT:            memref.load %x[%i{{.*}}, %{{.*}}]
// CHECK-NEXT:            memref.load %out0[%i{{.*}}, %{{.*}}]
// CHECK-NEXT:            arith.mulf %[[V]], %{{.*}} fastmath<fast>
func.func @nm(%x: memref<?x16xf32>, %w_values: memref<8x8xf32>, %w_indices: memref<8x1xi32>, %out0: memref<?x8xf32>) {
  %w = layout.assemble %w_values, %w_indices : memref<8x8xf32>, memref<8x1xi32> -> !layout.packed<[8, 16], #sparse.nm<2, 4>, #layout.storage<[#layout.buffer<"values", memref<8x8xf32>, "values">, #layout.buffer<"indices", memref<8x1xi32>, "metadata">], {n = #builtin.int<2>, m = #builtin.int<4>, index_bits = #builtin.int<2>, per_word = #builtin.int<16>, slots = #builtin.int<8>, words = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 4, 64, 256>} : memref<?x16xf32>, !layout.packed<[8, 16], #sparse.nm<2, 4>, #layout.storage<[#layout.buffer<"values", memref<8x8xf32>, "values">, #layout.buffer<"indices", memref<8x1xi32>, "metadata">], {n = #builtin.int<2>, m = #builtin.int<4>, index_bits = #builtin.int<2>, per_word = #builtin.int<16>, slots = #builtin.int<8>, words = #builtin.int<1>}>> into memref<?x8xf32>
  func.return
}

// CSR: the stored entries of row n are rowptr[n] .. rowptr[n + 1]; columns are
// unsigned and zero-extended.
// CHECK-LABEL: func.func @csr
// CHECK:         scf.for %n =
// CHECK:           %[[START:.*]] = memref.load %w_rowptr[%n]
// CHECK:           scf.for %p = %{{.*}} to %{{.*}}
// CHECK-NEXT:        %[[COL:.*]] = memref.load %w_cols[%p] : memref<?xi16>
// CHECK-NEXT:        arith.extui %[[COL]] : i16 to i64
// CHECK:             memref.load %w_values[%p] : memref<?xf32>
func.func @csr(%x: memref<?x16xf32>, %w_rowptr: memref<9xi32>, %w_cols: memref<?xi16>, %w_values: memref<?xf32>, %out0: memref<?x8xf32>) {
  %w = layout.assemble %w_rowptr, %w_cols, %w_values : memref<9xi32>, memref<?xi16>, memref<?xf32> -> !layout.packed<[8, 16], #sparse.csr<i16>, #layout.storage<[#layout.buffer<"rowptr", memref<9xi32>, "table">, #layout.buffer<"cols", memref<?xi16>, "metadata", unsigned>, #layout.buffer<"values", memref<?xf32>, "values">], {index_bits = #builtin.int<16>}>>
  tdsl.linear %x, %w into %out0 : memref<?x16xf32>, !layout.packed<[8, 16], #sparse.csr<i16>, #layout.storage<[#layout.buffer<"rowptr", memref<9xi32>, "table">, #layout.buffer<"cols", memref<?xi16>, "metadata", unsigned>, #layout.buffer<"values", memref<?xf32>, "values">], {index_bits = #builtin.int<16>}>> into memref<?x8xf32>
  func.return
}

// Hybrid: per tile row, one loop over the dense tiles and one over the 2:4 tiles,
// each reading its own schedule; no per-element branch on the format.
// CHECK-LABEL: func.func @hybrid
// CHECK:         scf.for %tr =
// CHECK:           memref.load %w_tile0_rowptr[%tr]
// CHECK:           scf.for %p =
// CHECK:             memref.load %w_tile0_cols[%p]
// CHECK:             memref.load %w_tile0_values[%p, %r, %c]
// CHECK:           memref.load %w_tile1_rowptr[%tr]
// CHECK:           scf.for %p{{.*}} =
// CHECK:             memref.load %w_tile1_cols[%p
// CHECK:             memref.load %w_tile1_indices[%p
// CHECK:             memref.load %w_tile1_values[%p
// CHECK-NOT:     scf.if
func.func @hybrid(%x: memref<?x16xf32>, %w_table: memref<2x2xi8>, %w_tile0_rowptr: memref<3xi32>, %w_tile0_cols: memref<?xi32>, %w_tile0_values: memref<?x4x8xf32>, %w_tile1_rowptr: memref<3xi32>, %w_tile1_cols: memref<?xi32>, %w_tile1_values: memref<?x4x4xf32>, %w_tile1_indices: memref<?x4x1xi32>, %out0: memref<?x8xf32>) {
  %w = layout.assemble %w_table, %w_tile0_rowptr, %w_tile0_cols, %w_tile0_values, %w_tile1_rowptr, %w_tile1_cols, %w_tile1_values, %w_tile1_indices : memref<2x2xi8>, memref<3xi32>, memref<?xi32>, memref<?x4x8xf32>, memref<3xi32>, memref<?xi32>, memref<?x4x4xf32>, memref<?x4x1xi32> -> !layout.packed<[8, 16], #sparse.hybrid<[4, 8], [#layout.dense, #sparse.nm<2, 4>]>, #layout.storage<[#layout.buffer<"table", memref<2x2xi8>, "table">, #layout.buffer<"tile0.rowptr", memref<3xi32>, "table">, #layout.buffer<"tile0.cols", memref<?xi32>, "metadata">, #layout.buffer<"tile0.values", memref<?x4x8xf32>, "values">, #layout.buffer<"tile1.rowptr", memref<3xi32>, "table">, #layout.buffer<"tile1.cols", memref<?xi32>, "metadata">, #layout.buffer<"tile1.values", memref<?x4x4xf32>, "values">, #layout.buffer<"tile1.indices", memref<?x4x1xi32>, "metadata">], {th = #builtin.int<4>, tw = #builtin.int<8>, "tile1.n" = #builtin.int<2>, "tile1.m" = #builtin.int<4>, "tile1.index_bits" = #builtin.int<2>, "tile1.per_word" = #builtin.int<16>, "tile1.slots" = #builtin.int<4>, "tile1.words" = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 : memref<?x16xf32>, !layout.packed<[8, 16], #sparse.hybrid<[4, 8], [#layout.dense, #sparse.nm<2, 4>]>, #layout.storage<[#layout.buffer<"table", memref<2x2xi8>, "table">, #layout.buffer<"tile0.rowptr", memref<3xi32>, "table">, #layout.buffer<"tile0.cols", memref<?xi32>, "metadata">, #layout.buffer<"tile0.values", memref<?x4x8xf32>, "values">, #layout.buffer<"tile1.rowptr", memref<3xi32>, "table">, #layout.buffer<"tile1.cols", memref<?xi32>, "metadata">, #layout.buffer<"tile1.values", memref<?x4x4xf32>, "values">, #layout.buffer<"tile1.indices", memref<?x4x1xi32>, "metadata">], {th = #builtin.int<4>, tw = #builtin.int<8>, "tile1.n" = #builtin.int<2>, "tile1.m" = #builtin.int<4>, "tile1.index_bits" = #builtin.int<2>, "tile1.per_word" = #builtin.int<16>, "tile1.slots" = #builtin.int<4>, "tile1.words" = #builtin.int<1>}>> into memref<?x8xf32>
  func.return
}
