// RUN: stoicc opt %s -p 'tdsl-microkernel{width=16 rows=2 cols=2 pack_k=0 bf16=true},canonicalize,cse' | filecheck %s
// With bf16=true (AVX-512 BF16), a linear of bf16 x and bf16 w steps with vdpbf16ps:
// 32 bf16 columns of each x and w row are loaded as stored and bitcast to the
// intrinsic's <16 x i32> pairs, one call per (x row, w row) pair, reduced in f32 once;
// k = 70 is ragged against steps of 32, so a scalar f32 tail finishes each block
// (the f32 out is tdsl-bufferize's: a bf16 product is rounded once, by a cast after it).
// CHECK-LABEL: func.func @linear
// CHECK:         scf.for %j0 = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK:           memref.store %{{.*}}, %out[%i, %j]
// CHECK:           } else {
// CHECK:           scf.for %k0_2 =
// CHECK:             scf.for %i_2 = %{{.*}} to %{{.*}} step %[[TWO:.*]] {
// CHECK:             scf.for %j_3 = %j0 to %{{.*}} step %[[TWO]] {
// CHECK:               scf.for %k_4 = %{{.*}} to %{{.*}} step %[[STEP:.*]] iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
// CHECK-NEXT:            %[[X0:.*]] = vector.load %x[%i_2, %k_4] : memref<?x70xbf16>, vector<32xbf16>
// CHECK-NEXT:            %[[P0:.*]] = vector.bitcast %[[X0]] : vector<32xbf16> to vector<16xi32>
// CHECK-NEXT:            %[[X1:.*]] = vector.load %x[%{{.*}}, %k_4] : memref<?x70xbf16>, vector<32xbf16>
// CHECK-NEXT:            %[[P1:.*]] = vector.bitcast %[[X1]] : vector<32xbf16> to vector<16xi32>
// CHECK-NEXT:            %[[W0:.*]] = vector.load %w[%j_3, %k_4] : memref<6x70xbf16>, vector<32xbf16>
// CHECK-NEXT:            %[[Q0:.*]] = vector.bitcast %[[W0]] : vector<32xbf16> to vector<16xi32>
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"(%{{.*}}, %[[P0]], %[[Q0]]) : (vector<16xf32>, vector<16xi32>, vector<16xi32>) -> vector<16xf32>
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"(%{{.*}}, %[[P1]], %[[Q0]])
// CHECK-NEXT:            vector.load %w
// CHECK-NEXT:            vector.bitcast
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
// CHECK-NEXT:            scf.yield
// CHECK-COUNT-4:       vector.reduction <add>, %{{.*}} fastmath<fast> : vector<16xf32> into f32
// CHECK:               scf.for %k_5 = %{{.*}} to %{{.*}} step %{{.*}} iter_args({{.*}}) -> (f32, f32, f32, f32) {
// CHECK:                 arith.extf {{.*}} : bf16 to f32
// CHECK:               memref.load %out[%i_2, %j_3] : memref<?x6xf32>
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

// A static k that is a multiple of 32 takes the outer-product form (PairKernel) for the
// whole groups of 16 rows (under `if` there are any): per n-tile, w's rows packed into
// a panel of bf16 pairs, i32 [k/2, tn] (tn: 256 KB at most; 16 rows' 32 columns at a time: 16 dword
// vectors transposed in registers, rows past the last copies of it); then 2 x 2 blocks
// of rows by vectors of columns, their accumulators loaded from and stored to out, per
// step of 2 columns one panel vector per 16 columns and one broadcast dword (a row's
// pair) per row, one vdpbf16ps each: no reductions. Columns past the whole vectors
// (n = 20) take dot products over the panel's pairs; the rows left, BF16Kernel.
// CHECK-LABEL: func.func @pairs
// CHECK:         scf.if %{{.*}} {
// CHECK-NEXT:      %[[PANEL:.*]] = memref.alloc() {alignment = 64 : i64} : memref<32x2048xi32>
// CHECK:           scf.for %r =
// CHECK-NEXT:        scf.for %k =
// CHECK-COUNT-16:      vector.load %w[%{{.*}}, %k] : memref<20x64xbf16>, vector<32xbf16>
// CHECK-COUNT-64:      vector.shuffle %{{.*}}, %{{.*}} [{{.*}}] : vector<16xi32>, vector<16xi32>
// CHECK-COUNT-16:      vector.store %{{.*}}, %[[PANEL]][%{{.*}}, %r] : memref<32x2048xi32>, vector<16xi32>
// CHECK:           memref.store %{{.*}}, %out[%i, %j]
// CHECK:           scf.for %{{.*}} = %{{.*}} to %{{.*}} step %[[TWO:.*]] iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
// CHECK-NEXT:        %[[P:.*]] = arith.divui %{{.*}}, %[[TWO]] : index
// CHECK-NEXT:        %[[W0:.*]] = vector.load %[[PANEL]][%[[P]], %{{.*}}] : memref<32x2048xi32>, vector<16xi32>
// CHECK-NEXT:        %[[W1:.*]] = vector.load %[[PANEL]][%[[P]], %{{.*}}] : memref<32x2048xi32>, vector<16xi32>
// CHECK-NEXT:        %[[X0:.*]] = vector.load %x[%{{.*}}, %{{.*}}] : memref<?x64xbf16>, vector<2xbf16>
// CHECK-NEXT:        %[[D0:.*]] = vector.bitcast %[[X0]] : vector<2xbf16> to vector<1xi32>
// CHECK-NEXT:        %[[E0:.*]] = vector.extract %[[D0]][0] : i32 from vector<1xi32>
// CHECK-NEXT:        %[[B0:.*]] = vector.broadcast %[[E0]] : i32 to vector<16xi32>
// CHECK:             llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"(%{{.*}}, %[[B0]], %[[W0]])
// CHECK-NEXT:        llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
// CHECK-NEXT:        llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"(%{{.*}}, %[[B0]], %[[W1]])
// CHECK-NEXT:        llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
// CHECK-NEXT:        scf.yield
// CHECK-NOT:       vector.reduction
// CHECK:           vector.load %[[PANEL]][%{{.*}}, %{{.*}}] : memref<32x2048xi32>, vector<1xi32>
// CHECK:           memref.dealloc %[[PANEL]]
// CHECK:         vector.load %w[%{{.*}}, %{{.*}}] : memref<20x64xbf16>, vector<32xbf16>
// CHECK:         vector.reduction <add>
func.func @pairs(%x: memref<?x64xbf16>, %w: memref<20x64xbf16>, %out: memref<?x20xf32>, %M: index) {
  tdsl.linear %x, %w into %out {tile = array<i64: 16, 4, 64>} : memref<?x64xbf16>, memref<20x64xbf16> into memref<?x20xf32>
  func.return
}
