// RUN: stoicc opt %s | stoicc opt | filecheck %s
// Layout attributes of the layout, sparse and quant dialects round-trip.

// CHECK: dense = !tdsl.tensor<[4, 8], f32>
// CHECK-SAME: nm = !tdsl.tensor<[4, 8], f32, #sparse.nm<2, 4>>
// CHECK-SAME: nm48 = #sparse.nm<4, 8>
// CHECK-SAME: block = #sparse.block<4, 4>
// CHECK-SAME: csr = #sparse.csr<i16>
// CHECK-SAME: hybrid = #sparse.hybrid<[32, 32], [#layout.dense, #sparse.nm<2, 4>]>
// CHECK-SAME: int4 = #quant.uniform<int4, per = group, axis = 1, group = 128, symmetric = 1, scale = f16>
// CHECK-SAME: int8 = #quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 0, scale = f32>
// CHECK-SAME: composed = #layout.with<#sparse.nm<2, 4>, #quant.uniform<int4, per = group, axis = 1, group = 128, symmetric = 1, scale = f32>>
// CHECK-SAME: sq = #quant.sq<#quant.uniform<int4, per = group, axis = 1, group = 128, symmetric = 1, scale = f32>, #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #builtin.int<128>, #builtin.int<6>>
// CHECK-SAME: split = #quant.bitsplit<#builtin.int<4>, #builtin.int<1>>
// CHECK-SAME: q4_1 = #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 0, scale = f16, zero = float>
// CHECK-SAME: int_zero = #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 0, scale = f32>
"test.op"() {
  dense = !tdsl.tensor<[4, 8], f32, #layout.dense>,
  nm = !tdsl.tensor<[4, 8], f32, #sparse.nm<2, 4>>,
  nm48 = #sparse.nm<4, 8>,
  block = #sparse.block<4, 4>,
  csr = #sparse.csr<i16>,
  hybrid = #sparse.hybrid<[32, 32], [#layout.dense, #sparse.nm<2, 4>]>,
  int4 = #quant.uniform<int4, per = group, axis = 1, group = 128, scale = f16>,
  int8 = #quant.uniform<int8, per = token, symmetric = 0>,
  composed = #layout.with<#sparse.nm<2, 4>, #quant.uniform<int4, per = group, axis = 1, group = 128>>,
  sq = #quant.sq<#quant.uniform<int4, per = group, axis = 1, group = 128>, #quant.uniform<int8, per = channel>, #builtin.int<128>, #builtin.int<6>>,
  split = #quant.bitsplit<#builtin.int<4>, #builtin.int<1>>,
  q4_1 = #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 0, scale = f16, zero = float>,
  int_zero = #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 0, zero = int>
} : () -> ()
