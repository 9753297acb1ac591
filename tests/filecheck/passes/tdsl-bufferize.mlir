// RUN: stoicc opt %s -p tdsl-bufferize | filecheck %s
// Tensors become buffers: inputs, then one output buffer per result, then one index
// per size symbol (the C ABI). The returned value is computed straight into its
// output buffer; the intermediate gets an aligned allocation, freed at the end.

// CHECK-LABEL: func.func @mlp(%x: memref<?x64xf32> {tdsl.name = "x", tdsl.dims = ["M", #builtin.int<64>]}, %w: memref<128x64xf32> {tdsl.name = "w", tdsl.dims = [#builtin.int<128>, #builtin.int<64>]}, %out0: memref<?x128xf32> {tdsl.dims = ["M", #builtin.int<128>], tdsl.output}, %M: index {tdsl.symbol = "M"}) attributes {stoicc.noalias_args} {
// CHECK-NEXT:    %h = memref.alloc(%M) {alignment = 64 : i64} : memref<?x128xf32>
// CHECK-NEXT:    tdsl.linear %x, %w into %h : memref<?x64xf32>, memref<128x64xf32> into memref<?x128xf32>
// CHECK-NEXT:    tdsl.relu %h into %out0 : memref<?x128xf32> into memref<?x128xf32>
// CHECK-NEXT:    memref.dealloc %h : memref<?x128xf32>
// CHECK-NEXT:    func.return
func.func @mlp(%x: !tdsl.tensor<[M, 64], f32> {tdsl.name = "x"}, %w: !tdsl.tensor<[128, 64], f32> {tdsl.name = "w"}) -> !tdsl.tensor<[M, 128], f32> {
  %h = tdsl.linear %x, %w : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 64], f32> -> !tdsl.tensor<[M, 128], f32>
  %0 = tdsl.relu %h : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  func.return %0 : !tdsl.tensor<[M, 128], f32>
}

// A returned parameter is copied; a constant is stored in a rank-0 buffer.
// CHECK-LABEL: func.func @copy_and_constant
// CHECK:         %[[C:.*]] = memref.alloc() {alignment = 64 : i64} : memref<f32>
// CHECK-NEXT:    %[[V:.*]] = arith.constant 2.000000e+00 : f32
// CHECK-NEXT:    memref.store %[[V]], %[[C]][] : memref<f32>
// CHECK-NEXT:    tdsl.mul %x, %[[C]] into %out1 : memref<4xf32>, memref<f32> into memref<4xf32>
// CHECK-NEXT:    "memref.copy"(%x, %out0) : (memref<4xf32>, memref<4xf32>) -> ()
// CHECK-NEXT:    memref.dealloc %[[C]] : memref<f32>
func.func @copy_and_constant(%x: !tdsl.tensor<[4], f32> {tdsl.name = "x"}) -> (!tdsl.tensor<[4], f32>, !tdsl.tensor<[4], f32>) {
  %c = tdsl.constant {value = 2.0 : f32} : !tdsl.tensor<[], f32>
  %0 = tdsl.mul %x, %c : !tdsl.tensor<[4], f32>, !tdsl.tensor<[], f32> -> !tdsl.tensor<[4], f32>
  func.return %x, %0 : !tdsl.tensor<[4], f32>, !tdsl.tensor<[4], f32>
}

// A non-dense parameter becomes the buffers recorded in its tdsl.storage,
// named after the parameter and role, and viewed as one value by layout.assemble.
// CHECK-LABEL: func.func @packed(%x: memref<?x16xf32> {tdsl.name = "x", tdsl.dims = ["M", #builtin.int<16>]}, %w_values: memref<8x8xf32> {tdsl.name = "w", tdsl.buffer = "values"}, %w_indices: memref<8x1xi32> {tdsl.name = "w", tdsl.buffer = "indices"}, %out0: memref<?x8xf32>
// CHECK-NEXT:    %w = layout.assemble %w_values, %w_indices : memref<8x8xf32>, memref<8x1xi32> -> !layout.packed<[8, 16], #sparse.nm<2, 4>, #layout.storage<
// CHECK-NEXT:    tdsl.linear %x, %w into %out0
func.func @packed(%x: !tdsl.tensor<[M, 16], f32> {tdsl.name = "x"}, %w: !tdsl.tensor<[8, 16], f32, #sparse.nm<2, 4>> {tdsl.name = "w", tdsl.storage = #layout.storage<[#layout.buffer<"values", memref<8x8xf32>, "values">, #layout.buffer<"indices", memref<8x1xi32>, "metadata">], {n = #builtin.int<2>, m = #builtin.int<4>, index_bits = #builtin.int<2>, per_word = #builtin.int<16>, slots = #builtin.int<8>, words = #builtin.int<1>}>}) -> !tdsl.tensor<[M, 8], f32> {
  %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, 16], f32>, !tdsl.tensor<[8, 16], f32, #sparse.nm<2, 4>> -> !tdsl.tensor<[M, 8], f32>
  func.return %0 : !tdsl.tensor<[M, 8], f32>
}
