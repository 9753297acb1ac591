// RUN: stoicc opt %s -p gpu-simt-map | filecheck %s

// gpu-simt-map: the body of one GPU thread block. The temporary comes from thread 0's
// malloc, its address shared through slot 0 of the new last parameter after a barrier;
// the parallel loop is dealt over the threads (lb + tid * step, step * ntid); the serial
// loop and the free run on thread 0; a barrier follows each.

// CHECK-LABEL: func.func @stoicc_f(%x: !ptr_xdsl.ptr, %n: index, %0: !ptr_xdsl.ptr)
// CHECK-SAME:    stoicc.calling_convention = "ptx_kernel", gpu.slots = 1 : i64
// CHECK:         %[[TID32:.*]] = llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.tid.x"() : () -> i32
// CHECK-NEXT:    %[[TID:.*]] = arith.index_cast %[[TID32]] : i32 to index
// CHECK:         %[[NTID:.*]] = arith.index_cast %{{.*}} : i32 to index
// CHECK:         %[[FIRST:.*]] = arith.cmpi eq, %[[TID]], %{{.*}} : index
// CHECK:         %[[SLOT:.*]] = ptr_xdsl.ptradd %0, %{{.*}}
// CHECK-NEXT:    scf.if %[[FIRST]] {
// CHECK-NEXT:      %[[M:.*]] = func.call @malloc(%{{.*}}) : (i64) -> !ptr_xdsl.ptr
// CHECK-NEXT:      ptr_xdsl.store %[[M]], %[[SLOT]]
// CHECK-NEXT:    }
// CHECK-NEXT:    llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK-NEXT:    %[[BUF:.*]] = ptr_xdsl.load %[[SLOT]] : !ptr_xdsl.ptr -> !ptr_xdsl.ptr
// CHECK:         %[[START:.*]] = arith.addi %c0, %{{.*}} : index
// CHECK:         %[[STRIDE:.*]] = arith.muli %c1, %[[NTID]] : index
// CHECK-NEXT:    scf.for %i = %[[START]] to %n step %[[STRIDE]] {
// CHECK:           ptr_xdsl.store %{{.*}}, %{{.*}} : f32, !ptr_xdsl.ptr
// CHECK:         } {stoicc.parallel}
// CHECK-NEXT:    llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK-NEXT:    scf.if %[[FIRST]] {
// CHECK-NEXT:      scf.for %j = %c0 to %n step %c1 {
// CHECK:           func.call @free(%[[BUF]])
// CHECK:         }
// CHECK-NEXT:    llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK-NEXT:    func.return
// CHECK:       func.func private @malloc(i64) -> !ptr_xdsl.ptr

builtin.module {
  func.func @stoicc_f(%x: !ptr_xdsl.ptr, %n: index) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c4 = arith.constant 4 : index
    %align = arith.constant 64 : i64
    %bytes = arith.constant 256 : i64
    %buf = func.call @aligned_alloc(%align, %bytes) : (i64, i64) -> !ptr_xdsl.ptr
    scf.for %i = %c0 to %n step %c1 {
      %off = arith.muli %i, %c4 : index
      %p = ptr_xdsl.ptradd %buf, %off : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
      %q = ptr_xdsl.ptradd %x, %off : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
      %v = ptr_xdsl.load %q : !ptr_xdsl.ptr -> f32
      ptr_xdsl.store %v, %p : f32, !ptr_xdsl.ptr
    } {stoicc.parallel}
    scf.for %j = %c0 to %n step %c1 {
      %off = arith.muli %j, %c4 : index
      %p = ptr_xdsl.ptradd %buf, %off : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
      %v = ptr_xdsl.load %p : !ptr_xdsl.ptr -> f32
      ptr_xdsl.store %v, %x : f32, !ptr_xdsl.ptr
    }
    func.call @free(%buf) : (!ptr_xdsl.ptr) -> ()
    func.return
  }
  func.func private @aligned_alloc(i64, i64) -> !ptr_xdsl.ptr
  func.func private @free(!ptr_xdsl.ptr) -> ()
}
