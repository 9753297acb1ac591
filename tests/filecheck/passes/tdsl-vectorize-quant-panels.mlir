// RUN: stoicc opt %s -p 'tdsl-vectorize-quant{width=16 rows=4 cols=2 gemv_cols=4 bf16_panels=true},canonicalize,cse' | filecheck %s
// bf16 activations times an int4 weight, with bf16_panels (a target with AVX-512 BF16):
// calls of 16 rows or more dequantize a panel of weight rows into bf16 (here all 24
// rows in one n-tile) and multiply it by x with a dense `tdsl.linear`, which
// tdsl-microkernel lowers to its vdpbf16ps kernel; fewer rows take the quantized kernel.

// CHECK-LABEL: func.func @panel_int4
// CHECK:         %[[M:.*]] = memref.dim %x
// CHECK:         %[[MANY:.*]] = arith.cmpi uge, %[[M]], %{{.*}} : index
// CHECK-NEXT:    scf.if %[[MANY]] {
// CHECK:           %[[PANEL:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x64xbf16>
// CHECK-NEXT:      %[[TILE:.*]] = memref.alloc(%[[M]], %{{.*}}) {alignment = 64 : i64} : memref<?x?xf32>
// Per weight row and chunk of 32 codes: the low and high nibbles decoded (exact), each
// times the group's scale (times 1/16 for the high nibble, which stays in place),
// interleaved back into column order, rounded to bf16 and stored.
// CHECK:           scf.for %r =
// CHECK-NEXT:        scf.for %k =
// CHECK:               %[[S:.*]] = memref.load %w_scales[%r, %{{.*}}] : memref<24x2xf32>
// CHECK:               %[[LO:.*]] = arith.mulf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK:               %[[HI:.*]] = arith.mulf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-NEXT:          %[[CAT:.*]] = vector.shuffle %[[LO]], %[[HI]]
// CHECK-NEXT:          %[[C0:.*]] = vector.shuffle %[[CAT]], %[[CAT]] [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23]
// CHECK-NEXT:          %[[C1:.*]] = vector.shuffle %[[CAT]], %[[CAT]] [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31]
// CHECK-NEXT:          %[[B0:.*]] = arith.truncf %[[C0]] : vector<16xf32> to vector<16xbf16>
// CHECK-NEXT:          vector.store %[[B0]], %[[PANEL]][%r, %k]
// CHECK:           tdsl.linear %x, %[[PANEL]] into %[[TILE]]
// CHECK:           memref.load %[[TILE]]
// CHECK-NEXT:      memref.store
// CHECK:           memref.dealloc %[[PANEL]]
// CHECK-NEXT:      memref.dealloc %[[TILE]]
// CHECK-NEXT:    } else {
// CHECK:           %x_lanes = memref.alloc
// CHECK-NOT:       tdsl.linear
// CHECK:         tdsl.cast
func.func @panel_int4(%x: memref<?x64xbf16> {tdsl.name = "x", tdsl.dims = ["M", #builtin.int<64>]}, %w_values: memref<24x32xi8> {tdsl.name = "w", tdsl.buffer = "values"}, %w_scales: memref<24x2xf32> {tdsl.name = "w", tdsl.buffer = "scales"}, %out0: memref<?x24xbf16> {tdsl.dims = ["M", #builtin.int<24>], tdsl.output}, %M: index {tdsl.symbol = "M"}) attributes {stoicc.noalias_args} {
  %w = layout.assemble %w_values, %w_scales : memref<24x32xi8>, memref<24x2xf32> -> !layout.packed<[24, 64], #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<24x32xi8>, "values">, #layout.buffer<"scales", memref<24x2xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<1>}>>
  %0 = memref.alloc(%M) {alignment = 64 : i64} : memref<?x24xf32>
  tdsl.linear %x, %w into %0 {tile = array<i64: 16, 48, 1024>} : memref<?x64xbf16>, !layout.packed<[24, 64], #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<24x32xi8>, "values">, #layout.buffer<"scales", memref<24x2xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<1>}>> into memref<?x24xf32>
  tdsl.cast %0 into %out0 {to = bf16} : memref<?x24xf32> into memref<?x24xbf16>
  memref.dealloc %0 : memref<?x24xf32>
  func.return
}
