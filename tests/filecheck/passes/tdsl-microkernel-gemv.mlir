// RUN: stoicc opt %s -p 'tdsl-microkernel{width=16 rows=2 cols=2 pack_k=0},canonicalize,cse' | filecheck %s
// RUN: stoicc opt %s -p 'tdsl-microkernel{width=8 rows=2 cols=2 pack_k=0},canonicalize,cse' | filecheck %s --check-prefix=EIGHT
// The 1-row blocks of a dense f32 linear (the rows left after the 2-row blocks: all of a
// GEMV's one) whose weight is 24 MB or more (PREFETCH_BYTES: here 4096 x 1536) prefetch,
// each step, the bytes at k of the weight rows 2 blocks (4 rows) ahead into L2 (read,
// locality 1, data: flags 0, 1, 1). The 2-row blocks do not prefetch, nor do a smaller
// weight's (@small: SmolLM2's in f32 decode 1.13-1.19x faster without on Zen 4). With 8
// lanes a step reads half a line of a row, and the blocks do not prefetch (Zen 3 ran
// SmolLM2's shapes faster without).
// EIGHT-LABEL: func.func @linear
// EIGHT-NOT:     llvm.prefetch
// EIGHT:         func.return
// EIGHT-LABEL: func.func @small
// EIGHT-NOT:     llvm.prefetch
// EIGHT:         func.return
// CHECK-LABEL: func.func @linear
// CHECK:         scf.for %i_1 = {{.*}} {
// CHECK-NOT:       llvm.prefetch
// CHECK:         scf.for %i_2 = {{.*}} {
// CHECK:           scf.for %[[J:j_[0-9]+]] = {{.*}} {
// CHECK:             scf.for %[[K:k_[0-9]+]] = {{.*}} {
// CHECK-NEXT:          %[[ROW:.*]] = arith.addi %[[J]], %[[AHEAD:.*]] : index
// CHECK-NEXT:          %[[KB:.*]] = arith.muli %[[K]], %[[ROWBYTES:.*]] : index
// CHECK-NEXT:          %[[INTO:.*]] = arith.divui %[[KB]], %{{.*}} : index
// CHECK-NEXT:          %[[BASE:.*]] = arith.muli %[[ROW]], %[[ROWBYTES]] : index
// CHECK-NEXT:          %[[AT:.*]] = arith.addi %[[BASE]], %[[INTO]] : index
// CHECK-NEXT:          %[[P:.*]] = ptr_xdsl.to_ptr %w : memref<4096x1536xf32> -> !ptr_xdsl.ptr
// CHECK-NEXT:          %[[A:.*]] = ptr_xdsl.ptradd %[[P]], %[[AT]] : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
// CHECK-NEXT:          llvm.call_intrinsic "llvm.prefetch.p0"(%[[A]], %{{.*}}, %[[ONE:.*]], %[[ONE]]) : (!ptr_xdsl.ptr, i32, i32, i32) -> ()
// CHECK:               llvm.call_intrinsic "llvm.prefetch.p0"
// CHECK:               vector.load %w[%[[J]], %[[K]]] : memref<4096x1536xf32>, vector<16xf32>
// CHECK:         func.return
func.func @linear(%x: memref<?x1536xf32>, %w: memref<4096x1536xf32>, %out: memref<?x4096xf32>, %M: index) {
  tdsl.linear %x, %w into %out {tile = array<i64: 16, 8, 1536>} : memref<?x1536xf32>, memref<4096x1536xf32> into memref<?x4096xf32>
  func.return
}

// CHECK-LABEL: func.func @small
// CHECK-NOT:     llvm.prefetch
// CHECK:         func.return
func.func @small(%x: memref<?x576xf32>, %w: memref<1536x576xf32>, %out: memref<?x1536xf32>, %M: index) {
  tdsl.linear %x, %w into %out {tile = array<i64: 16, 8, 576>} : memref<?x576xf32>, memref<1536x576xf32> into memref<?x1536xf32>
  func.return
}
