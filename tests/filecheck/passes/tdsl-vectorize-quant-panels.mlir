// RUN: stoicc opt %s -p 'tdsl-vectorize-quant{width=16 rows=4 cols=2 gemv_cols=4 bf16_panels=true},canonicalize,cse' | filecheck %s
// bf16 activations times an int4 weight, with bf16_panels (a target with AVX-512 BF16):
// calls of 16 rows or more dequantize the weight per n-tile (here all 24 rows in one)
// into a panel of bf16 pairs, i32 [k/2, 32], and multiply x by it with
// tdsl-microkernel's PairKernel (vdpbf16ps, outer product) straight into out; fewer
// rows take the quantized kernel.

// CHECK-LABEL: func.func @panel_int4
// CHECK:         %[[M:.*]] = memref.dim %x
// CHECK:         %[[MANY:.*]] = arith.cmpi uge, %[[M]], %{{.*}} : index
// CHECK-NEXT:    scf.if %[[MANY]] {
// CHECK:           %[[PANEL:.*]] = memref.alloc() {alignment = 64 : i64} : memref<32x32xi32>
// CHECK-NEXT:      %[[STAGE:.*]] = memref.alloc() {alignment = 64 : i64} : memref<16x64xbf16>
// Per 16 weight rows: per row and chunk of 32 codes, the low and high nibbles decoded
// (exact), each times the group's scale (times 1/16 for the high nibble, which stays in
// place), interleaved back into column order, rounded to bf16 and staged; then the
// staged rows' 32-column runs, as 16 dwords of pairs each, transposed 16 x 16 into the
// panel's rows of pairs.
// CHECK:           scf.for %r0 =
// CHECK:             scf.for %r =
// CHECK-NEXT:          arith.addi %r0, %r
// CHECK-NEXT:          scf.for %k =
// CHECK:                 %[[S:.*]] = memref.load %w_scales[%{{.*}}, %{{.*}}] : memref<24x2xf32>
// CHECK:                 %[[LO:.*]] = arith.mulf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK:                 %[[HI:.*]] = arith.mulf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-NEXT:            %[[CAT:.*]] = vector.shuffle %[[LO]], %[[HI]]
// CHECK-NEXT:            %[[C0:.*]] = vector.shuffle %[[CAT]], %[[CAT]] [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23]
// CHECK-NEXT:            %[[C1:.*]] = vector.shuffle %[[CAT]], %[[CAT]] [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31]
// CHECK-NEXT:            %[[B0:.*]] = arith.truncf %[[C0]] : vector<16xf32> to vector<16xbf16>
// CHECK-NEXT:            vector.store %[[B0]], %[[STAGE]][%r, %k]
// CHECK:             scf.for %r_1 =
// CHECK-NEXT:          scf.for %k_1 =
// CHECK-COUNT-16:        vector.load %[[STAGE]][%{{.*}}, %k_1] : memref<16x64xbf16>, vector<32xbf16>
// CHECK-COUNT-64:        vector.shuffle %{{.*}}, %{{.*}} [{{.*}}] : vector<16xi32>, vector<16xi32>
// CHECK-COUNT-16:        vector.store %{{.*}}, %[[PANEL]][%{{.*}}, %{{.*}}] : memref<32x32xi32>, vector<16xi32>
// The output's tile zeroed, then 6-row x 4-vector blocks: per 2 columns of x, a vector of
// the panel per 16 columns, each row's pair broadcast as a dword, one vdpbf16ps each.
// CHECK:           memref.store %{{.*}}, %0[%i, %j] : memref<?x24xf32>
// CHECK:           scf.for %k_2 = %{{.*}} to %{{.*}} step %[[TWO:.*]] iter_args(
// CHECK-NEXT:        %[[P:.*]] = arith.divui %k_2, %[[TWO]] : index
// CHECK-NEXT:        %[[W0:.*]] = vector.load %[[PANEL]][%[[P]], %{{.*}}] : memref<32x32xi32>, vector<16xi32>
// CHECK:             %[[X0:.*]] = vector.load %x[%{{.*}}, %k_2] : memref<?x64xbf16>, vector<2xbf16>
// CHECK-NEXT:        %[[D0:.*]] = vector.bitcast %[[X0]] : vector<2xbf16> to vector<1xi32>
// CHECK-NEXT:        %[[E0:.*]] = vector.extract %[[D0]][0] : i32 from vector<1xi32>
// CHECK-NEXT:        %[[B:.*]] = vector.broadcast %[[E0]] : i32 to vector<16xi32>
// CHECK:             llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"(%{{.*}}, %[[B]], %[[W0]])
// The 8 columns past the panel's one whole vector: dot products over its pairs.
// CHECK:           vector.bitcast %{{.*}} : vector<1xi32> to vector<2xbf16>
// CHECK:           memref.dealloc %[[PANEL]]
// CHECK-NEXT:      memref.dealloc %[[STAGE]]
// CHECK:         } else {
// CHECK:           %x_lanes = memref.alloc
// CHECK-NOT:       dpbf16ps
// CHECK:         tdsl.cast
func.func @panel_int4(%x: memref<?x64xbf16> {tdsl.name = "x", tdsl.dims = ["M", #builtin.int<64>]}, %w_values: memref<24x32xi8> {tdsl.name = "w", tdsl.buffer = "values"}, %w_scales: memref<24x2xf32> {tdsl.name = "w", tdsl.buffer = "scales"}, %out0: memref<?x24xbf16> {tdsl.dims = ["M", #builtin.int<24>], tdsl.output}, %M: index {tdsl.symbol = "M"}) attributes {stoicc.noalias_args} {
  %w = layout.assemble %w_values, %w_scales : memref<24x32xi8>, memref<24x2xf32> -> !layout.packed<[24, 64], #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<24x32xi8>, "values">, #layout.buffer<"scales", memref<24x2xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<1>}>>
  %0 = memref.alloc(%M) {alignment = 64 : i64} : memref<?x24xf32>
  tdsl.linear %x, %w into %0 {tile = array<i64: 16, 48, 1024>} : memref<?x64xbf16>, !layout.packed<[24, 64], #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<24x32xi8>, "values">, #layout.buffer<"scales", memref<24x2xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<1>}>> into memref<?x24xf32>
  tdsl.cast %0 into %out0 {to = bf16} : memref<?x24xf32> into memref<?x24xbf16>
  memref.dealloc %0 : memref<?x24xf32>
  func.return
}
