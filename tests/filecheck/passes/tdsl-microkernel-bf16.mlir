// RUN: stoicc opt %s -p 'tdsl-microkernel{width=16 rows=2 cols=2 pack_k=0 bf16=true},canonicalize,cse' | filecheck %s
// With bf16=true (AVX-512 BF16), a linear of bf16 x and bf16 w steps with vdpbf16ps:
// 32 bf16 columns of each x and w row are loaded as stored and bitcast to the
// intrinsic's <16 x i32> pairs, one call per (x row, w row) pair, reduced in f32 once;
// k = 70 is ragged against steps of 32, so a scalar f32 tail finishes each block
// (the f32 out is tdsl-bufferize's: a bf16 product is rounded once, by a cast after it).
// CHECK-LABEL: func.func @linear
// CHECK:         scf.for %j0 = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:           memref.store %{{.*}}, %out[%i, %j]
// CHECK:           scf.for %k0 =
// CHECK:             scf.for %i_1 = %{{.*}} to %{{.*}} step %[[TWO:.*]] {
// CHECK:             scf.for %j_1 = %j0 to %{{.*}} step %[[TWO]] {
// CHECK:               scf.for %k = %{{.*}} to %{{.*}} step %[[STEP:.*]] iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
// CHECK-NEXT:            %[[X0:.*]] = vector.load %x[%i_1, %k] : memref<?x70xbf16>, vector<32xbf16>
// CHECK-NEXT:            %[[P0:.*]] = vector.bitcast %[[X0]] : vector<32xbf16> to vector<16xi32>
// CHECK-NEXT:            %[[X1:.*]] = vector.load %x[%{{.*}}, %k] : memref<?x70xbf16>, vector<32xbf16>
// CHECK-NEXT:            %[[P1:.*]] = vector.bitcast %[[X1]] : vector<32xbf16> to vector<16xi32>
// CHECK-NEXT:            %[[W0:.*]] = vector.load %w[%j_1, %k] : memref<6x70xbf16>, vector<32xbf16>
// CHECK-NEXT:            %[[Q0:.*]] = vector.bitcast %[[W0]] : vector<32xbf16> to vector<16xi32>
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"(%{{.*}}, %[[P0]], %[[Q0]]) : (vector<16xf32>, vector<16xi32>, vector<16xi32>) -> vector<16xf32>
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"(%{{.*}}, %[[P1]], %[[Q0]])
// CHECK-NEXT:            vector.load %w
// CHECK-NEXT:            vector.bitcast
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
// CHECK-NEXT:            scf.yield
// CHECK-COUNT-4:       vector.reduction <add>, %{{.*}} fastmath<fast> : vector<16xf32> into f32
// CHECK:               scf.for %k_1 = %{{.*}} to %{{.*}} step %{{.*}} iter_args({{.*}}) -> (f32, f32, f32, f32) {
// CHECK:                 arith.extf {{.*}} : bf16 to f32
// CHECK:               memref.load %out[%i_1, %j_1] : memref<?x6xf32>
func.func @linear(%x: memref<?x70xbf16>, %w: memref<6x70xbf16>, %out: memref<?x6xf32>, %M: index) {
  tdsl.linear %x, %w into %out {tile = array<i64: 16, 4, 64>} : memref<?x70xbf16>, memref<6x70xbf16> into memref<?x6xf32>
  func.return
}

// bf16 x with an f32 w computes in f32 (x widened as loaded): the f32 FMA kernel.
// CHECK-LABEL: func.func @mixed
// CHECK-NOT:     llvm.call_intrinsic
// CHECK:         arith.extf {{.*}} : vector<16xbf16> to vector<16xf32>
// CHECK:         vector.fma
// CHECK-NOT:     llvm.call_intrinsic
// CHECK:         func.return
func.func @mixed(%x: memref<?x64xbf16>, %w: memref<4x64xf32>, %out: memref<?x4xf32>, %M: index) {
  tdsl.linear %x, %w into %out {tile = array<i64: 16, 4, 32>} : memref<?x64xbf16>, memref<4x64xf32> into memref<?x4xf32>
  func.return
}
