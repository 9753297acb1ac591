// RUN: stoicc opt %s -p 'tdsl-vectorize-quant{width=8 rows=2 cols=2 gemv_cols=2 accumulators=4},canonicalize,cse' | filecheck %s
// `matmul(x, w)` with an int4 weight stored [K, N] (codes and groups of 16 along N) is
// bufferized as a dequantize into a scratch weight that the matmul reads. The pair
// becomes the axpy form over the codes (QuantStream): no scratch weight, no reductions.

// CHECK-LABEL: func.func @kn_int4
// CHECK-NOT:     tdsl.dequantize
// CHECK-NOT:     tdsl.matmul
// CHECK:         %[[SIXTEENTH:.*]] = arith.constant dense<6.250000e-02> : vector<8xf32>
// CHECK-NEXT:    %[[FLIP:.*]] = arith.constant dense<-120> : vector<8xi8>
// CHECK-NEXT:    %[[EXP:.*]] = arith.constant dense<1258291200> : vector<8xi32>
// Per n-tile of 32 columns, row blocks of 2 rows x 1 chunk (16 columns, 8 code bytes):
// 4 accumulators, the 2 nibbles of each row. Per k: x[i, k] broadcast for each row,
// the chunk's bytes loaded once, sign bits flipped, widened; the scale of (k, group)
// multiplies each decoded nibble (q * 16^f, exact), which meets every row by an FMA.
// CHECK:         scf.for %j0 =
// CHECK-NEXT:      scf.for %i = {{.*}} step %[[TWO:.*]] {
// CHECK:             scf.for %j = %j0 to
// CHECK:               scf.for %k = {{.*}} -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK:                 %[[X0:.*]] = vector.broadcast %{{.*}} : f32 to vector<8xf32>
// CHECK-NEXT:            %[[X1:.*]] = vector.broadcast %{{.*}} : f32 to vector<8xf32>
// CHECK:                 %[[B:.*]] = vector.load %w_values[%k, %{{.*}}] : memref<8x20xi8>, vector<8xi8>
// CHECK-NEXT:            %[[F:.*]] = arith.xori %[[B]], %[[FLIP]] : vector<8xi8>
// CHECK-NEXT:            %[[W:.*]] = llvm.zext %[[F]] : vector<8xi8> to vector<8xi32>
// CHECK:                 %[[S:.*]] = memref.load %w_scales[%k, %{{.*}}] : memref<8x3xf32>
// CHECK-NEXT:            %[[LO:.*]] = arith.andi %[[W]], %{{.*}} : vector<8xi32>
// CHECK-NEXT:            %[[M:.*]] = arith.ori %[[LO]], %[[EXP]] : vector<8xi32>
// CHECK-NEXT:            %[[U:.*]] = vector.bitcast %[[M]] : vector<8xi32> to vector<8xf32>
// CHECK-NEXT:            %[[Q:.*]] = arith.subf %[[U]], %{{.*}} : vector<8xf32>
// CHECK-NEXT:            %[[SV:.*]] = vector.broadcast %[[S]] : f32 to vector<8xf32>
// CHECK-NEXT:            %[[D:.*]] = arith.mulf %[[Q]], %[[SV]] : vector<8xf32>
// CHECK-NEXT:            vector.fma %[[X0]], %[[D]], %{{.*}} : vector<8xf32>
// CHECK-NEXT:            vector.fma %[[X1]], %[[D]], %{{.*}} : vector<8xf32>
// At the end the high nibbles' sums are scaled by 1/16 (exact) and the nibbles
// interleaved back into column order: lane t of field f is column 2t + f.
// CHECK:               %[[HI:.*]] = arith.mulf %{{.*}}, %[[SIXTEENTH]] : vector<8xf32>
// CHECK-NEXT:          %[[CAT:.*]] = vector.shuffle %{{.*}}, %[[HI]] [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
// CHECK-NEXT:          %[[C0:.*]] = vector.shuffle %[[CAT]], %[[CAT]] [0, 8, 1, 9, 2, 10, 3, 11]
// CHECK-NEXT:          %[[C1:.*]] = vector.shuffle %[[CAT]], %[[CAT]] [4, 12, 5, 13, 6, 14, 7, 15]
// CHECK-NEXT:          vector.store %[[C0]], %out0[%i, %j]
// The rows left, one at a time, take the whole tile (2 chunks, x times the scale
// broadcast once per chunk); then the columns past the last tile (one chunk at a time:
// here 8 columns, fewer than a chunk, so none) and past the last chunk, one by one.
// CHECK:           scf.for %i_1 =
// CHECK:             %[[XS:.*]] = arith.mulf %{{.*}}, %{{.*}} : f32
// CHECK-NEXT:        vector.broadcast %[[XS]] : f32 to vector<8xf32>
// CHECK:         scf.for %i_2 =
// CHECK:         scf.for %i_3 =
// CHECK-NEXT:      scf.for %j_2 =
// CHECK:             memref.load %w_values
// CHECK-NOT:     memref.dealloc
func.func @kn_int4(%x: memref<?x8xf32>, %w_values: memref<8x20xi8>, %w_scales: memref<8x3xf32>, %out0: memref<?x40xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales : memref<8x20xi8>, memref<8x3xf32> -> !layout.packed<[8, 40], #quant.uniform<int4, per = group, axis = 1, group = 16, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<8x20xi8>, "values">, #layout.buffer<"scales", memref<8x3xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<16>, symmetric = #builtin.int<1>}>>
  %0 = memref.alloc() {alignment = 64 : i64} : memref<8x40xf32>
  tdsl.dequantize %w into %0 : !layout.packed<[8, 40], #quant.uniform<int4, per = group, axis = 1, group = 16, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<8x20xi8>, "values">, #layout.buffer<"scales", memref<8x3xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<16>, symmetric = #builtin.int<1>}>> into memref<8x40xf32>
  tdsl.matmul %x, %0 into %out0 {tile = array<i64: 16, 256, 128>} : memref<?x8xf32>, memref<8x40xf32> into memref<?x40xf32>
  memref.dealloc %0 : memref<8x40xf32>
  func.return
}
