// RUN: stoicc opt %s -p metadata-layout | filecheck %s
// A packed parameter with size symbols: the buffer dims that depend on them are
// dynamic, and tdsl.buffer_dims names each one: the parameter's own symbol (N rows)
// or a symbol derived from the sizes (arg1_values_dim1: N:M slots per row, bytes of
// codes per row, scale groups per row), which the runtime binds from the buffers.
// An encoding param that varies with the sizes (slots, words) is recorded as -1.

// CHECK-LABEL: func.func @nm
// CHECK-SAME: tdsl.storage = #layout.storage<[#layout.buffer<"values", memref<?x?xf32>, "values">, #layout.buffer<"indices", memref<?x?xi32>, "metadata">], {n = #builtin.int<2>, m = #builtin.int<4>, index_bits = #builtin.int<2>, per_word = #builtin.int<16>, slots = #builtin.int<-1>, words = #builtin.int<-1>}>
// CHECK-SAME: tdsl.buffer_dims = {{\[\[}}"N", "arg1_values_dim1"], ["N", "arg1_indices_dim1"]]
func.func @nm(%x: !tdsl.tensor<[M, K], f32>, %w: !tdsl.tensor<[N, K], f32, #sparse.nm<2, 4>>) -> !tdsl.tensor<[M, N], f32> {
  %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, K], f32>, !tdsl.tensor<[N, K], f32, #sparse.nm<2, 4>> -> !tdsl.tensor<[M, N], f32>
  func.return %0 : !tdsl.tensor<[M, N], f32>
}

// A static row count stays static.
// CHECK-LABEL: func.func @int4
// CHECK-SAME: #layout.buffer<"values", memref<64x?xi8>, "values">, #layout.buffer<"scales", memref<64x?xf32>, "scales">
// CHECK-SAME: tdsl.buffer_dims = {{\[\[}}#builtin.int<64>, "arg1_values_dim1"], [#builtin.int<64>, "arg1_scales_dim1"]]
func.func @int4(%x: !tdsl.tensor<[M, K], f32>, %w: !tdsl.tensor<[64, K], f32, #quant.uniform<int4, per = group, axis = 0, group = 32>>) -> !tdsl.tensor<[M, 64], f32> {
  %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, K], f32>, !tdsl.tensor<[64, K], f32, #quant.uniform<int4, per = group, axis = 0, group = 32>> -> !tdsl.tensor<[M, 64], f32>
  func.return %0 : !tdsl.tensor<[M, 64], f32>
}

// The hybrid tile grid and row pointers depend on both symbols; the tiles' count is the data's (-1).
// CHECK-LABEL: func.func @hybrid
// CHECK-SAME: #layout.buffer<"table", memref<?x?xi8>, "table">, #layout.buffer<"tile0.rowptr", memref<?xi32>, "table">, #layout.buffer<"tile0.cols", memref<?xi32>, "metadata">, #layout.buffer<"tile0.values", memref<?x8x32xf32>, "values">
// CHECK-SAME: tdsl.buffer_dims = {{\[\[}}"arg1_table_dim0", "arg1_table_dim1"], ["arg1_tile0_rowptr_dim0"], [#builtin.int<-1>], [#builtin.int<-1>, #builtin.int<8>, #builtin.int<32>]]
func.func @hybrid(%x: !tdsl.tensor<[M, K], f32>, %w: !tdsl.tensor<[N, K], f32, #sparse.hybrid<[8, 32], [#layout.dense]>>) -> !tdsl.tensor<[M, N], f32> {
  %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, K], f32>, !tdsl.tensor<[N, K], f32, #sparse.hybrid<[8, 32], [#layout.dense]>> -> !tdsl.tensor<[M, N], f32>
  func.return %0 : !tdsl.tensor<[M, N], f32>
}
