// RUN: stoicc opt %s -p 'tdsl-vectorize-quant{width=16 rows=4 cols=2 gemv_cols=4},canonicalize,cse' | filecheck %s
// The GEMV blocks (1 x gemv_cols weight rows: the rows left after the row blocks, all of a
// one-row call's) of Q4_1's grid (int4 g32, f16 scales and float zeros' offsets):
// - in each n-tile that has rows left, scratch where each block first widens its columns'
//   scales (rows 0-3) and offsets (rows 4-7) of every group, in one loop that LLVM
//   vectorises (vcvtph2ps), so that the segments broadcast f32 from L1 (a load folded
//   into the fma) instead of widening a half float per column and group;
// - each step prefetches the same bytes of the rows gemv_cols * 2 ahead (%[[AHEAD]] = 8)
//   into L2 (read, locality 1, data: flags 0, 1, 1): rows of 32 bytes here, of 288-576
//   in SmolLM2, are too short for the hardware's stream prefetchers.
// The row blocks (4 x 2) read the half floats where they are stored, unprefetched.
// CHECK-LABEL: func.func @q4_1
// CHECK:         scf.for %j = %{{.*}} {
// CHECK:           memref.load %w_scales[%j, %{{.*}}] : memref<8x2xf16>
// CHECK-NEXT:      arith.extf %{{.*}} : f16 to f32
// CHECK-NOT:       llvm.prefetch
// CHECK:         %[[LEFT:.*]] = arith.cmpi ult, %{{.*}}, %{{.*}} : index
// CHECK-NEXT:    scf.if %[[LEFT]] {
// CHECK-NEXT:      %widened = memref.alloc() {alignment = 64 : i64} : memref<8x2xf32>
// CHECK:           scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT:        scf.for %[[J:[a-z0-9_]+]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:             scf.for %g = {{.*}} {
// CHECK-NEXT:          %[[S:.*]] = memref.load %w_scales[%[[J]], %g] : memref<8x2xf16>
// CHECK-NEXT:          %[[SW:.*]] = arith.extf %[[S]] : f16 to f32
// CHECK-NEXT:          memref.store %[[SW]], %widened[%{{.*}}, %g] : memref<8x2xf32>
// CHECK-NEXT:          %[[O:.*]] = memref.load %w_offsets[%[[J]], %g] : memref<8x2xf16>
// CHECK-NEXT:          %[[OW:.*]] = arith.extf %[[O]] : f16 to f32
// CHECK-NEXT:          memref.store %[[OW]], %widened[%{{.*}}, %g] : memref<8x2xf32>
// CHECK:             scf.for %s_2 = {{.*}} {
// CHECK:               scf.for %k_3 = {{.*}} {
// CHECK-NEXT:            %[[ROW:.*]] = arith.addi %[[J]], %[[AHEAD:.*]] : index
// CHECK-NEXT:            %[[INTO:.*]] = arith.divui %k_3, %{{.*}} : index
// CHECK-NEXT:            %[[BASE:.*]] = arith.muli %[[ROW]], %{{.*}} : index
// CHECK-NEXT:            %[[AT:.*]] = arith.addi %[[BASE]], %[[INTO]] : index
// CHECK-NEXT:            %[[P:.*]] = ptr_xdsl.to_ptr %w_values : memref<8x32xi8> -> !ptr_xdsl.ptr
// CHECK-NEXT:            %[[A:.*]] = ptr_xdsl.ptradd %[[P]], %[[AT]] : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
// CHECK-NEXT:            llvm.call_intrinsic "llvm.prefetch.p0"(%[[A]], %[[ZERO:.*]], %[[ONE:.*]], %[[ONE]]) : (!ptr_xdsl.ptr, i32, i32, i32) -> ()
// CHECK-COUNT-3:         llvm.call_intrinsic "llvm.prefetch.p0"
// CHECK:                 vector.load %w_values[%[[J]], %[[INTO]]] : memref<8x32xi8>, vector<16xi8>
// CHECK:               %[[SCALE:.*]] = memref.load %widened[%{{.*}}, %{{.*}}] : memref<8x2xf32>
// CHECK-NEXT:          vector.broadcast %[[SCALE]] : f32 to vector<16xf32>
// CHECK-NOT:           w_scales
// CHECK:               vector.load %x_sums
// CHECK-NEXT:          %[[OFFSET:.*]] = memref.load %widened[%{{.*}}, %{{.*}}] : memref<8x2xf32>
// CHECK-NEXT:          vector.broadcast %[[OFFSET]] : f32 to vector<16xf32>
// CHECK:           memref.dealloc %widened : memref<8x2xf32>
// CHECK:         func.return
func.func @q4_1(%x: memref<?x64xf32>, %w_values: memref<8x32xi8>, %w_scales: memref<8x2xf16>, %w_offsets: memref<8x2xf16>, %out0: memref<?x8xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales, %w_offsets : memref<8x32xi8>, memref<8x2xf16>, memref<8x2xf16> -> !layout.packed<[8, 64], #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 0, scale = f16, zero = float>, #layout.storage<[#layout.buffer<"values", memref<8x32xi8>, "values", unsigned>, #layout.buffer<"scales", memref<8x2xf16>, "scales">, #layout.buffer<"offsets", memref<8x2xf16>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<0>, float_offset = #builtin.int<1>}>>
  tdsl.linear %x, %w into %out0 {tile = array<i64: 16, 48, 1024>} : memref<?x64xf32>, !layout.packed<[8, 64], #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 0, scale = f16, zero = float>, #layout.storage<[#layout.buffer<"values", memref<8x32xi8>, "values", unsigned>, #layout.buffer<"scales", memref<8x2xf16>, "scales">, #layout.buffer<"offsets", memref<8x2xf16>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<0>, float_offset = #builtin.int<1>}>> into memref<?x8xf32>
  func.return
}
