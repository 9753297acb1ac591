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

// An element offset times a constant size or an element's type_offset indexes a
// type of that size, and the multiplication and its factor go (4 bytes: i32; 12
// bytes: an array of i8; bf16: i16); a product used elsewhere stays.
// CHECK-LABEL: func.func @scaled(%p: !ptr_xdsl.ptr, %i: i64) -> (f32, f32, i64, bf16)
// CHECK-NEXT:    [[P:%.*]] = builtin.unrealized_conversion_cast %p : !ptr_xdsl.ptr to !llvm.ptr
// CHECK-NEXT:    [[Q:%.*]] = llvm.getelementptr inbounds [[P]][%i] : (!llvm.ptr, i64) -> !llvm.ptr, i32
// CHECK:         %c12 = arith.constant 12 : i64
// CHECK-NEXT:    %k = arith.muli %i, %c12 : i64
// CHECK-NEXT:    [[P2:%.*]] = builtin.unrealized_conversion_cast %p : !ptr_xdsl.ptr to !llvm.ptr
// CHECK-NEXT:    [[R:%.*]] = llvm.getelementptr inbounds [[P2]][%i] : (!llvm.ptr, i64) -> !llvm.ptr, !llvm.array<12 x i8>
// CHECK-NOT:     arith.muli
// CHECK:         llvm.getelementptr inbounds %{{.*}}[%i] : (!llvm.ptr, i64) -> !llvm.ptr, i16
// CHECK-NOT:     ptr_xdsl.type_offset
// CHECK:         func.return %{{.*}}, %{{.*}}, %k, %{{.*}} : f32, f32, i64, bf16
func.func @scaled(%p: !ptr_xdsl.ptr, %i: i64) -> (f32, f32, i64, bf16) {
  %c4 = arith.constant 4 : i64
  %j = arith.muli %i, %c4 : i64
  %q = ptr_xdsl.ptradd %p, %j : (!ptr_xdsl.ptr, i64) -> !ptr_xdsl.ptr
  %v = ptr_xdsl.load %q : !ptr_xdsl.ptr -> f32
  %c12 = arith.constant 12 : i64
  %k = arith.muli %i, %c12 : i64
  %r = ptr_xdsl.ptradd %p, %k : (!ptr_xdsl.ptr, i64) -> !ptr_xdsl.ptr
  %w = ptr_xdsl.load %r : !ptr_xdsl.ptr -> f32
  %c2 = ptr_xdsl.type_offset bf16 : i64
  %h = arith.muli %i, %c2 : i64
  %s = ptr_xdsl.ptradd %p, %h : (!ptr_xdsl.ptr, i64) -> !ptr_xdsl.ptr
  %u = ptr_xdsl.load %s : !ptr_xdsl.ptr -> bf16
  func.return %v, %w, %k, %u : f32, f32, i64, bf16
}
