// RUN: stoicc opt %s -p convert-ptradd-to-gep | filecheck %s

// A byte offset becomes an inbounds i8 GEP, which keeps the pointer's provenance
// visible to LLVM (unlike ptrtoint/add/inttoptr); index offsets are cast to i64
// first, and casts reconcile the two pointer types until convert-ptr-to-llvm.

// CHECK-LABEL: func.func @load_at(%p: !ptr_xdsl.ptr, %i: index, %j: i64) -> f32
// CHECK-NEXT:    [[I:%.*]] = arith.index_cast %i : index to i64
// CHECK-NEXT:    [[P:%.*]] = builtin.unrealized_conversion_cast %p : !ptr_xdsl.ptr to !llvm.ptr
// CHECK-NEXT:    [[Q:%.*]] = llvm.getelementptr inbounds [[P]][[[I]]] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// CHECK-NEXT:    [[Q2:%.*]] = builtin.unrealized_conversion_cast [[Q]] : !llvm.ptr to !ptr_xdsl.ptr
// CHECK-NEXT:    [[Q3:%.*]] = builtin.unrealized_conversion_cast [[Q2]] : !ptr_xdsl.ptr to !llvm.ptr
// CHECK-NEXT:    [[R:%.*]] = llvm.getelementptr inbounds [[Q3]][%j] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// CHECK-NEXT:    [[R2:%.*]] = builtin.unrealized_conversion_cast [[R]] : !llvm.ptr to !ptr_xdsl.ptr
// CHECK-NEXT:    %v = ptr_xdsl.load [[R2]] : !ptr_xdsl.ptr -> f32
// CHECK-NEXT:    func.return %v : f32
func.func @load_at(%p: !ptr_xdsl.ptr, %i: index, %j: i64) -> f32 {
  %q = ptr_xdsl.ptradd %p, %i : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
  %r = ptr_xdsl.ptradd %q, %j : (!ptr_xdsl.ptr, i64) -> !ptr_xdsl.ptr
  %v = ptr_xdsl.load %r : !ptr_xdsl.ptr -> f32
  func.return %v : f32
}
