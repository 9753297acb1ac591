// RUN: stoicc opt %s -p metadata-layout | filecheck %s
// Each non-dense parameter gets its physical buffers, derived from its layout for
// this shape: 2:4 on [8, 16] keeps 8 values per row and packs their 2-bit
// positions 16 to a 32-bit word; CSR has row pointers, unsigned i16 columns and
// values whose length is known once packed. Dense parameters are left alone.

// CHECK-LABEL: func.func @weights
// CHECK-SAME:    %x: !tdsl.tensor<[M, 16], f32> {tdsl.name = "x"}
// CHECK-SAME:    tdsl.storage = #layout.storage<[#layout.buffer<"values", memref<8x8xf32>, "values">, #layout.buffer<"indices", memref<8x1xi32>, "metadata">], {n = #builtin.int<2>, m = #builtin.int<4>, index_bits = #builtin.int<2>, per_word = #builtin.int<16>, slots = #builtin.int<8>, words = #builtin.int<1>}>
// CHECK-SAME:    tdsl.storage = #layout.storage<[#layout.buffer<"rowptr", memref<9xi32>, "table">, #layout.buffer<"cols", memref<?xi16>, "metadata", unsigned>, #layout.buffer<"values", memref<?xf32>, "values">], {index_bits = #builtin.int<16>}>
// CHECK-SAME:    tdsl.storage = #layout.storage<[#layout.buffer<"table", memref<2x2xi8>, "table">, #layout.buffer<"tile0.rowptr", memref<3xi32>, "table">, #layout.buffer<"tile0.cols", memref<?xi32>, "metadata">, #layout.buffer<"tile0.values", memref<?x4x8xf32>, "values">, #layout.buffer<"tile1.rowptr", memref<3xi32>, "table">, #layout.buffer<"tile1.cols", memref<?xi32>, "metadata">, #layout.buffer<"tile1.values", memref<?x4x4xf32>, "values">, #layout.buffer<"tile1.indices", memref<?x4x1xi32>, "metadata">]
func.func @weights(%x: !tdsl.tensor<[M, 16], f32> {tdsl.name = "x"}, %a: !tdsl.tensor<[8, 16], f32, #sparse.nm<2, 4>> {tdsl.name = "a"}, %b: !tdsl.tensor<[8, 16], f32, #sparse.csr<i16>> {tdsl.name = "b"}, %c: !tdsl.tensor<[8, 16], f32, #sparse.hybrid<[4, 8], [#layout.dense, #sparse.nm<2, 4>]>> {tdsl.name = "c"}) -> !tdsl.tensor<[M, 8], f32> {
  %0 = tdsl.linear %x, %a : !tdsl.tensor<[M, 16], f32>, !tdsl.tensor<[8, 16], f32, #sparse.nm<2, 4>> -> !tdsl.tensor<[M, 8], f32>
  func.return %0 : !tdsl.tensor<[M, 8], f32>
}
