// RUN: stoicc opt %s -p 'tdsl-vectorize-quant{width=8 rows=2 cols=2 gemv_cols=2},canonicalize,cse' | filecheck %s
// Products of f32 activations and a uniform quantized weight become vector nests that
// unpack the codes in registers, exactly, and scale each group's dot products once.

// int4 in groups of 32 (bias + relu) on 8 lanes: a chunk is 8 code bytes, 16 codes.
// x is copied once per call, each chunk's even columns, then its odd ones times 1/16
// (the high nibble is masked in place: 16 times its value).
// CHECK-LABEL: func.func @int4_group
// CHECK:         %x_lanes = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x64xf32>
// CHECK:         %[[SIXTEENTH:.*]] = arith.constant dense<6.250000e-02> : vector<8xf32>
// CHECK:         %[[X:.*]] = vector.load %x[%i, %k] : memref<?x64xf32>, vector<16xf32>
// CHECK-NEXT:    %[[EVEN:.*]] = vector.shuffle %[[X]], %[[X]] [0, 2, 4, 6, 8, 10, 12, 14] : vector<16xf32>, vector<16xf32>
// CHECK-NEXT:    vector.store %[[EVEN]], %x_lanes[%i, %k]
// CHECK-NEXT:    %[[ODD:.*]] = vector.shuffle %[[X]], %[[X]] [1, 3, 5, 7, 9, 11, 13, 15] : vector<16xf32>, vector<16xf32>
// CHECK-NEXT:    %[[SCALED:.*]] = arith.mulf %[[ODD]], %[[SIXTEENTH]] : vector<8xf32>
// CHECK:         vector.store %[[SCALED]], %x_lanes[%i, %{{.*}}]
// Row blocks of 2 rows x 2 weight rows, per group (%s) the chunks (%k). A chunk loads
// each weight row's bytes once, flips the codes' sign bits (0x88 = -120: u = q + 8)
// and widens them to i32 lanes. Per nibble f (a loop that LLVM unrolls): a mask, an
// or with the bits of 2^23 (0x4B000000 = 1258291200) and a bitcast (2^23 + u * 16^f,
// exactly), minus 2^23 + 8 * 16^f (q * 16^f, exactly), and an FMA per row of x. The
// scale applies once per group, the reduction once per output.
// CHECK:         %[[EIGHT:.*]] = arith.constant dense<8.000000e+00> : vector<8xf32>
// CHECK-NEXT:    %[[FLIP:.*]] = arith.constant dense<-120> : vector<8xi8>
// CHECK:         %[[TWO23:.*]] = arith.constant dense<0x4B000000> : vector<8xf32>
// CHECK-NEXT:    %[[EXP:.*]] = arith.constant dense<1258291200> : vector<8xi32>
// CHECK:         scf.for %i_1 = %{{.*}} to %{{.*}} step %[[TWO:.*]] {
// CHECK-NEXT:      scf.for %j = %{{.*}} to %{{.*}} step %[[TWO]] {
// CHECK:             scf.for %s = {{.*}} -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK:               scf.for %k_1 = %s to
// CHECK:                 %[[B0:.*]] = vector.load %w_values[%j, %{{.*}}] : memref<5x32xi8>, vector<8xi8>
// CHECK-NEXT:            %[[F0:.*]] = arith.xori %[[B0]], %[[FLIP]] : vector<8xi8>
// CHECK-NEXT:            %[[W0:.*]] = llvm.zext %[[F0]] : vector<8xi8> to vector<8xi32>
// CHECK:                 scf.for %f =
// CHECK:                   %[[X0:.*]] = vector.load %x_lanes[%i_1, %{{.*}}] : memref<?x64xf32>, vector<8xf32>
// CHECK-NEXT:              %[[X1:.*]] = vector.load %x_lanes[%{{.*}}, %{{.*}}] : memref<?x64xf32>, vector<8xf32>
// CHECK:                   %[[MASK:.*]] = arith.shli %{{.*}}, %{{.*}} : vector<8xi32>
// CHECK:                   %[[BIAS:.*]] = vector.fma %[[EIGHT]], %{{.*}}, %[[TWO23]] : vector<8xf32>
// CHECK-NEXT:              %[[N0:.*]] = arith.andi %[[W0]], %[[MASK]] : vector<8xi32>
// CHECK-NEXT:              %[[M0:.*]] = arith.ori %[[N0]], %[[EXP]] : vector<8xi32>
// CHECK-NEXT:              %[[U0:.*]] = vector.bitcast %[[M0]] : vector<8xi32> to vector<8xf32>
// CHECK-NEXT:              %[[Q0:.*]] = arith.subf %[[U0]], %[[BIAS]] : vector<8xf32>
// CHECK-NEXT:              vector.fma %[[X0]], %[[Q0]], %{{.*}} : vector<8xf32>
// CHECK-NEXT:              vector.fma %[[X1]], %[[Q0]], %{{.*}} : vector<8xf32>
// CHECK:               %[[S0:.*]] = memref.load %w_scales[%j, %{{.*}}] : memref<5x2xf32>
// CHECK-NEXT:          %[[SV:.*]] = vector.broadcast %[[S0]] : f32 to vector<8xf32>
// CHECK-NEXT:          vector.fma %[[SV]], %{{.*}}, %{{.*}} : vector<8xf32>
// CHECK:             %[[R0:.*]] = vector.reduction <add>, %{{.*}} fastmath<fast> : vector<8xf32> into f32
// CHECK-NEXT:        memref.store %[[R0]], %out0[%i_1, %j]
// Leftover rows: 1x2 kernels. N = 5 is odd: its last column takes 1x1 kernels for
// every row. Then bias and relu, and the scratch is freed.
// CHECK:         scf.for %i_2 =
// CHECK:           {{.*}} = scf.for %s_1 = {{.*}} -> (vector<8xf32>, vector<8xf32>) {
// CHECK:         scf.for %i_3 =
// CHECK:           {{.*}} = scf.for %s_2 = {{.*}} -> (vector<8xf32>) {
// CHECK:         memref.load %b
// CHECK:         arith.maximumf
// CHECK:         memref.dealloc %x_lanes : memref<?x64xf32>
func.func @int4_group(%x: memref<?x64xf32>, %w_values: memref<5x32xi8>, %w_scales: memref<5x2xf32>, %b: memref<5xf32>, %out0: memref<?x5xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales : memref<5x32xi8>, memref<5x2xf32> -> !layout.packed<[5, 64], #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<5x32xi8>, "values">, #layout.buffer<"scales", memref<5x2xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<1>}>>
  tdsl.linear %x, %w bias %b into %out0 {act = "relu", tile = array<i64: 16, 48, 1024>} : memref<?x64xf32>, !layout.packed<[5, 64], #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<5x32xi8>, "values">, #layout.buffer<"scales", memref<5x2xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<1>}>> bias memref<5xf32> into memref<?x5xf32>
  func.return
}

// Asymmetric int8, one scale and zero point per row: x is read in place (a byte is
// one code); bytes are zero-extended and OR-ed into 2^23's bits, and 2^23 + zero
// point (loaded once per row and group) is subtracted. One scale per row: a single
// segment.
// CHECK-LABEL: func.func @int8_zero_points
// CHECK-NOT:     memref.alloc
// CHECK:         %[[ZP:.*]] = memref.load %w_zero_points[%j] : memref<4xi8>
// CHECK-NEXT:    %[[ZP32:.*]] = arith.extui %[[ZP]] : i8 to i32
// CHECK-NEXT:    %[[ZPF:.*]] = arith.sitofp %[[ZP32]] : i32 to f32
// CHECK-NEXT:    %[[ZPV:.*]] = vector.broadcast %[[ZPF]] : f32 to vector<8xf32>
// CHECK:         %[[B:.*]] = vector.load %w_values[%j, %k] : memref<4x16xi8>, vector<8xi8>
// CHECK-NEXT:    %[[Z:.*]] = llvm.zext %[[B]] : vector<8xi8> to vector<8xi32>
// CHECK:         vector.load %x[%i, %k] : memref<?x16xf32>, vector<8xf32>
// CHECK:         %[[BIAS:.*]] = vector.fma %[[ZPV]], %{{.*}}, %{{.*}} : vector<8xf32>
// CHECK-NEXT:    %[[W:.*]] = arith.ori %[[Z]], %{{.*}} : vector<8xi32>
// CHECK-NEXT:    %[[U:.*]] = vector.bitcast %[[W]] : vector<8xi32> to vector<8xf32>
// CHECK-NEXT:    arith.subf %[[U]], %[[BIAS]] : vector<8xf32>
// CHECK:         memref.load %w_scales[%j] : memref<4xf32>
// CHECK-NOT:     memref.dealloc
// CHECK:         func.return
func.func @int8_zero_points(%x: memref<?x16xf32>, %w_values: memref<4x16xi8>, %w_scales: memref<4xf32>, %w_zero_points: memref<4xi8>, %out0: memref<?x4xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales, %w_zero_points : memref<4x16xi8>, memref<4xf32>, memref<4xi8> -> !layout.packed<[4, 16], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 0, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x16xi8>, "values", unsigned>, #layout.buffer<"scales", memref<4xf32>, "scales">, #layout.buffer<"zero_points", memref<4xi8>, "scales", unsigned>], {bits = #builtin.int<8>, group = #builtin.int<16>, symmetric = #builtin.int<0>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 16, 48, 1024>} : memref<?x16xf32>, !layout.packed<[4, 16], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 0, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x16xi8>, "values", unsigned>, #layout.buffer<"scales", memref<4xf32>, "scales">, #layout.buffer<"zero_points", memref<4xi8>, "scales", unsigned>], {bits = #builtin.int<8>, group = #builtin.int<16>, symmetric = #builtin.int<0>}>> into memref<?x4xf32>
  func.return
}

// Symmetric int8: sign-extended bytes are the codes, converted; no scratch.
// CHECK-LABEL: func.func @int8_symmetric
// CHECK-NOT:     memref.alloc
// CHECK:         %[[B:.*]] = vector.load %w_values[%j, %k] : memref<4x16xi8>, vector<8xi8>
// CHECK-NEXT:    %[[W:.*]] = llvm.sext %[[B]] : vector<8xi8> to vector<8xi32>
// CHECK:         llvm.sitofp %[[W]] : vector<8xi32> to vector<8xf32>
// CHECK-NOT:     arith.subf
// CHECK:         func.return
func.func @int8_symmetric(%x: memref<?x16xf32>, %w_values: memref<4x16xi8>, %w_scales: memref<4xf32>, %out0: memref<?x4xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales : memref<4x16xi8>, memref<4xf32> -> !layout.packed<[4, 16], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x16xi8>, "values">, #layout.buffer<"scales", memref<4xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<16>, symmetric = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 16, 48, 1024>} : memref<?x16xf32>, !layout.packed<[4, 16], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x16xi8>, "values">, #layout.buffer<"scales", memref<4xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<16>, symmetric = #builtin.int<1>}>> into memref<?x4xf32>
  func.return
}

// Binary, one scale for the tensor: 8 fields per byte. x's chunks hold its columns
// 8t + j at j*8 + t, times 2^-j. A bit is read doubled (the word shifted left once,
// mask 2 << j, no flip), u = 2 * bit = q + 1: the bias is 2^23 + 1 * 2^j.
// CHECK-LABEL: func.func @binary
// CHECK:         %[[LAST:.*]] = arith.constant dense<7.812500e-03> : vector<8xf32>
// CHECK:         %[[J7:.*]] = vector.shuffle %{{.*}}, %{{.*}} [7, 15, 23, 31, 39, 47, 55, 63] : vector<64xf32>, vector<64xf32>
// CHECK-NEXT:    arith.mulf %[[J7]], %[[LAST]] : vector<8xf32>
// CHECK:         %[[ONE:.*]] = arith.constant dense<1.000000e+00> : vector<8xf32>
// CHECK-NEXT:    %[[SHIFT:.*]] = arith.constant dense<1> : vector<8xi32>
// CHECK-NEXT:    %[[BIT:.*]] = arith.constant dense<2> : vector<8xi32>
// CHECK-NOT:     arith.xori
// CHECK:         %[[Z:.*]] = llvm.zext %{{.*}} : vector<8xi8> to vector<8xi32>
// CHECK-NEXT:    arith.shli %[[Z]], %[[SHIFT]] : vector<8xi32>
// CHECK:         scf.for %f =
// CHECK:           arith.shli %[[BIT]], %{{.*}} : vector<8xi32>
// CHECK:           vector.fma %[[ONE]], %{{.*}}, %{{.*}} : vector<8xf32>
func.func @binary(%x: memref<?x64xf32>, %w_values: memref<4x8xi8>, %w_scales: memref<1xf32>, %out0: memref<?x4xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales : memref<4x8xi8>, memref<1xf32> -> !layout.packed<[4, 64], #quant.uniform<binary, per = tensor, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x8xi8>, "values">, #layout.buffer<"scales", memref<1xf32>, "scales">], {bits = #builtin.int<1>, group = #builtin.int<64>, symmetric = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 16, 48, 1024>} : memref<?x64xf32>, !layout.packed<[4, 64], #quant.uniform<binary, per = tensor, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x8xi8>, "values">, #layout.buffer<"scales", memref<1xf32>, "scales">], {bits = #builtin.int<1>, group = #builtin.int<64>, symmetric = #builtin.int<1>}>> into memref<?x4xf32>
  func.return
}

// Ternary in groups of 16 with f16 scales: 16 codes fill only 4 lanes, so the
// vectors narrow to 4 lanes (a chunk is one group). The sign bits flip with
// 0xAA = -86 (u = q + 2); scales are extended to f32.
// CHECK-LABEL: func.func @ternary_narrow
// CHECK:         vector.shuffle %{{.*}}, %{{.*}} [0, 4, 8, 12] : vector<16xf32>, vector<16xf32>
// CHECK:         arith.constant dense<2.000000e+00> : vector<4xf32>
// CHECK-NEXT:    arith.constant dense<-86> : vector<4xi8>
// CHECK:         vector.load %w_values[%j, %{{.*}}] : memref<4x8xi8>, vector<4xi8>
// CHECK:         memref.load %w_scales[%j, %{{.*}}] : memref<4x2xf16>
// CHECK-NEXT:    arith.extf %{{.*}} : f16 to f32
// CHECK:         vector.reduction <add>, %{{.*}} fastmath<fast> : vector<4xf32> into f32
func.func @ternary_narrow(%x: memref<?x32xf32>, %w_values: memref<4x8xi8>, %w_scales: memref<4x2xf16>, %out0: memref<?x4xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales : memref<4x8xi8>, memref<4x2xf16> -> !layout.packed<[4, 32], #quant.uniform<ternary, per = group, axis = 1, group = 16, symmetric = 1, scale = f16>, #layout.storage<[#layout.buffer<"values", memref<4x8xi8>, "values">, #layout.buffer<"scales", memref<4x2xf16>, "scales">], {bits = #builtin.int<2>, group = #builtin.int<16>, symmetric = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 16, 48, 1024>} : memref<?x32xf32>, !layout.packed<[4, 32], #quant.uniform<ternary, per = group, axis = 1, group = 16, symmetric = 1, scale = f16>, #layout.storage<[#layout.buffer<"values", memref<4x8xi8>, "values">, #layout.buffer<"scales", memref<4x2xf16>, "scales">], {bits = #builtin.int<2>, group = #builtin.int<16>, symmetric = #builtin.int<1>}>> into memref<?x4xf32>
  func.return
}

// One scale per column (groups of one code) is left to tdsl-lower-to-loops.
// CHECK-LABEL: func.func @per_column
// CHECK-NEXT:    %w = layout.assemble
// CHECK-NEXT:    tdsl.linear %x, %w into %out0
func.func @per_column(%x: memref<?x32xf32>, %w_values: memref<4x16xi8>, %w_scales: memref<32xf32>, %out0: memref<?x4xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales : memref<4x16xi8>, memref<32xf32> -> !layout.packed<[4, 32], #quant.uniform<int4, per = channel, axis = 1, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x16xi8>, "values">, #layout.buffer<"scales", memref<32xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<1>, symmetric = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 16, 48, 1024>} : memref<?x32xf32>, !layout.packed<[4, 32], #quant.uniform<int4, per = channel, axis = 1, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x16xi8>, "values">, #layout.buffer<"scales", memref<32xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<1>, symmetric = #builtin.int<1>}>> into memref<?x4xf32>
  func.return
}

// A symbolic N (the weight's rows, f32[N, 16] @ int8(axis=0)): the same vector nest, its
// row count read from the output (%N); the last columns, one at a time, from a run-time
// boundary. A symbolic K is left to the generic loop nest (no vector op).
// CHECK-LABEL: func.func @symbolic_rows
// CHECK:         %[[N:.*]] = memref.dim %out0, %{{.*}} : memref<?x?xf32>
// CHECK:         vector.load %w_values[%{{.*}}, %{{.*}}] : memref<?x16xi8>, vector<8xi8>
// CHECK:         func.return
func.func @symbolic_rows(%x: memref<?x16xf32>, %w_values: memref<?x16xi8>, %w_scales: memref<?xf32>, %out0: memref<?x?xf32>, %M: index, %N: index) {
  %w = layout.assemble %w_values, %w_scales : memref<?x16xi8>, memref<?xf32> -> !layout.packed<[?, 16], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<?x16xi8>, "values">, #layout.buffer<"scales", memref<?xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<16>, symmetric = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 16, 48, 1024>} : memref<?x16xf32>, !layout.packed<[?, 16], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<?x16xi8>, "values">, #layout.buffer<"scales", memref<?xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<16>, symmetric = #builtin.int<1>}>> into memref<?x?xf32>
  func.return
}

// CHECK-LABEL: func.func @symbolic_width
// CHECK-NOT:     vector.
// CHECK:         tdsl.linear
func.func @symbolic_width(%x: memref<?x?xf32>, %w_values: memref<4x?xi8>, %w_scales: memref<4xf32>, %out0: memref<?x4xf32>, %M: index, %K: index) {
  %w = layout.assemble %w_values, %w_scales : memref<4x?xi8>, memref<4xf32> -> !layout.packed<[4, ?], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x?xi8>, "values">, #layout.buffer<"scales", memref<4xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<-1>, symmetric = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 16, 48, 1024>} : memref<?x?xf32>, !layout.packed<[4, ?], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x?xi8>, "values">, #layout.buffer<"scales", memref<4xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<-1>, symmetric = #builtin.int<1>}>> into memref<?x4xf32>
  func.return
}

// A float zero (value = scale * code + offset): unsigned codes with nothing subtracted
// (no zero point), and per segment offset * sum(x), the sums taken once per call as
// 8 partial lanes per row and segment, one more fma per output.
// CHECK-LABEL: func.func @int8_float_zero
// CHECK:         %x_sums = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// CHECK:         %[[XV:.*]] = vector.load %x[%i, %k] : memref<?x16xf32>, vector<8xf32>
// CHECK-NEXT:    arith.addf %{{.*}}, %[[XV]] : vector<8xf32>
// CHECK:         vector.store %{{.*}}, %x_sums[%i, %{{.*}}] : memref<?x8xf32>, vector<8xf32>
// CHECK-NOT:     w_zero_points
// CHECK:         %[[Z:.*]] = llvm.zext %{{.*}} : vector<8xi8> to vector<8xi32>
// CHECK:         %[[W:.*]] = arith.ori %[[Z]], %[[MAGIC:.*]] : vector<8xi32>
// CHECK-NEXT:    %[[U:.*]] = vector.bitcast %[[W]] : vector<8xi32> to vector<8xf32>
// CHECK-NEXT:    arith.subf %[[U]], %{{.*}} : vector<8xf32>
// CHECK:         %[[S:.*]] = memref.load %w_scales[%j] : memref<4xf32>
// CHECK:         %[[SUMS:.*]] = vector.load %x_sums[%i_1, %{{.*}}] : memref<?x8xf32>, vector<8xf32>
// CHECK:         %[[M:.*]] = memref.load %w_offsets[%j] : memref<4xf32>
// CHECK-NEXT:    %[[MV:.*]] = vector.broadcast %[[M]] : f32 to vector<8xf32>
// CHECK-NEXT:    vector.fma %[[MV]], %[[SUMS]], %{{.*}} : vector<8xf32>
// CHECK:         memref.dealloc %x_sums
// CHECK:         func.return
func.func @int8_float_zero(%x: memref<?x16xf32>, %w_values: memref<4x16xi8>, %w_scales: memref<4xf32>, %w_offsets: memref<4xf32>, %out0: memref<?x4xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales, %w_offsets : memref<4x16xi8>, memref<4xf32>, memref<4xf32> -> !layout.packed<[4, 16], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 0, scale = f32, zero = float>, #layout.storage<[#layout.buffer<"values", memref<4x16xi8>, "values", unsigned>, #layout.buffer<"scales", memref<4xf32>, "scales">, #layout.buffer<"offsets", memref<4xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<16>, symmetric = #builtin.int<0>, float_offset = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 16, 48, 1024>} : memref<?x16xf32>, !layout.packed<[4, 16], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 0, scale = f32, zero = float>, #layout.storage<[#layout.buffer<"values", memref<4x16xi8>, "values", unsigned>, #layout.buffer<"scales", memref<4xf32>, "scales">, #layout.buffer<"offsets", memref<4xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<16>, symmetric = #builtin.int<0>, float_offset = #builtin.int<1>}>> into memref<?x4xf32>
  func.return
}
