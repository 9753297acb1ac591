// RUN: stoicc opt %s -p metadata-layout | filecheck %s
// Composite layouts' storage: 2:4 with int4 quantizes the [8, 32] compressed values
// (scale groups count stored values) and keeps the N:M index words; SQ-format has
// the low part's buffers and, per group of 32, 2 int8 codes with u16 positions.

// CHECK-LABEL: func.func @composite
// CHECK-SAME: tdsl.storage = #layout.storage<[#layout.buffer<"values", memref<8x16xi8>, "values">, #layout.buffer<"scales", memref<8x2xf32>, "scales">, #layout.buffer<"indices", memref<8x2xi32>, "metadata">], {n = #builtin.int<2>, m = #builtin.int<4>, index_bits = #builtin.int<2>, per_word = #builtin.int<16>, slots = #builtin.int<32>, words = #builtin.int<2>, q.bits = #builtin.int<4>, q.group = #builtin.int<16>, q.symmetric = #builtin.int<1>}>
// CHECK-SAME: tdsl.storage = #layout.storage<[#layout.buffer<"low.values", memref<8x32xi8>, "values">, #layout.buffer<"low.scales", memref<8xf32>, "scales">, #layout.buffer<"high.values", memref<8x4xi8>, "values">, #layout.buffer<"high.index", memref<8x4xi16>, "metadata", unsigned>, #layout.buffer<"high.scales", memref<8xf32>, "scales">]
func.func @composite(%x: !tdsl.tensor<[M, 64], f32>, %a: !tdsl.tensor<[8, 64], f32, #layout.with<#sparse.nm<2, 4>, #quant.uniform<int4, per = group, axis = 1, group = 16>>>, %b: !tdsl.tensor<[8, 64], f32, #quant.sq<#quant.uniform<int4, per = channel>, #quant.uniform<int8, per = channel>, #builtin.int<32>, #builtin.int<2>>>) -> !tdsl.tensor<[M, 8], f32> {
  %0 = tdsl.linear %x, %a : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[8, 64], f32, #layout.with<#sparse.nm<2, 4>, #quant.uniform<int4, per = group, axis = 1, group = 16>>> -> !tdsl.tensor<[M, 8], f32>
  func.return %0 : !tdsl.tensor<[M, 8], f32>
}
