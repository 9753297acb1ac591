// RUN: stoicc opt %s --split-input-file --verify-diagnostics | filecheck %s
// Layout verifiers reject impossible parameters.

"test.op"() {a = #sparse.nm<5, 4>} : () -> ()
// CHECK: nm: N must satisfy 0 < N < M, got N=5, M=4

// -----

"test.op"() {a = #sparse.nm<2, 6>} : () -> ()
// CHECK: nm: M must be a power of two >= 2, got 6

// -----

"test.op"() {a = #sparse.block<0, 4>} : () -> ()
// CHECK: block: block sizes must be positive, got [0, 4]

// -----

"test.op"() {a = #sparse.csr<i12>} : () -> ()
// CHECK: csr: index width must be one of i8, i16, i32, i64, got i12

// -----

"test.op"() {a = #sparse.hybrid<[32, 30], [#layout.dense, #sparse.nm<2, 4>]>} : () -> ()
// CHECK: hybrid: nm group size M = 4 does not divide the dimension of size 30

// -----

"test.op"() {a = #sparse.hybrid<[32, 32], [#sparse.csr<i32>]>} : () -> ()
// CHECK: hybrid: a tile format must be dense or nm(N, M), got csr(index=i32)

// -----

"test.op"() {a = #quant.uniform<int4, per = group, group = 0>} : () -> ()
// CHECK: quant: int4 group size must be positive, got group=0

// -----

"test.op"() {a = #quant.uniform<ternary, symmetric = 0>} : () -> ()
// CHECK: quant: ternary is symmetric only

// -----

"test.op"() {a = #quant.uniform<int4, per = group, group = 32, zero = float>} : () -> ()
// CHECK: quant: int4 with zero=float is asymmetric (symmetric=false)

// -----

"test.op"() {a = #quant.uniform<int4, per = group, group = 32, symmetric = 0, zero = half>} : () -> ()
// CHECK: quant: zero must be int or float, got zero=half

// -----

"test.op"() {a = #quant.uniform<int8, per = token, symmetric = 0, zero = float>} : () -> ()
// CHECK: quant: zero=float is a weight grid, not per token (activations)

// -----

"test.op"() {a = #layout.with<#quant.uniform<int8>, #sparse.nm<2, 4>>} : () -> ()
// CHECK: 'with' expects a sparse layout on its left, got int8()

// -----

"test.op"() {a = !tdsl.tensor<[4, 6], f32, #sparse.nm<2, 4>>} : () -> ()
// CHECK: nm: group size M = 4 does not divide the dimension of size 6

// -----

"test.op"() {a = !tdsl.tensor<[4, 100], f32, #quant.uniform<int3, per = group, axis = 1, group = 64>>} : () -> ()
// CHECK: quant: int3 packs 8 codes in whole bytes, which must divide the last dimension of size 100

// -----

"test.op"() {a = #quant.sq<#quant.uniform<int4, per = group, group = 128>, #quant.uniform<int4>, #builtin.int<128>, #builtin.int<6>>} : () -> ()
// CHECK: sq: high must be int8 per tensor or per row (axis=0), got int4()

// -----

"test.op"() {a = #quant.sq<#quant.uniform<int4, per = group, group = 128>, #quant.uniform<int8>, #builtin.int<4>, #builtin.int<6>>} : () -> ()
// CHECK: sq: 6 high-precision elements per group of 4

// -----

"test.op"() {a = #quant.bitsplit<#builtin.int<3>, #builtin.int<0>>} : () -> ()
// CHECK: bitsplit: low_bits must be 4 (two 4-bit passes), got 3

// -----

"test.op"() {a = !tdsl.tensor<[8, 256], f32, #layout.with<#sparse.nm<2, 4>, #quant.uniform<int4, per = group, group = 256>>>} : () -> ()
// CHECK: int4(group=256) under nm(2, 4) counts stored values, not columns: K=256 columns store 128 values per row, not a multiple of 256; make K a multiple of 512, or use a group that divides 128
