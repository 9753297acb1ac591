// RUN: stoicc opt %s -t llvm | filecheck %s

// An scf.for becomes a header (phis of the induction variable and the carried values,
// the `slt` test), its body and a latch; constants are operands; index is i64; a
// noalias function's pointers are noalias.

// CHECK-LABEL: define float @sum(ptr noalias %a0, i64 %a1) {
// CHECK-NEXT:  entry:
// CHECK-NEXT:    br label %[[HEADER:b[0-9]+]]
// CHECK-NEXT:  [[HEADER]]:
// CHECK-NEXT:    %[[I:v[0-9]+]] = phi i64 [ 0, %entry ], [ %[[NEXT:v[0-9]+]], %[[BODY:b[0-9]+]] ]
// CHECK-NEXT:    %[[ACC:v[0-9]+]] = phi float [ 0x0000000000000000, %entry ], [ %[[S:v[0-9]+]], %[[BODY]] ]
// CHECK-NEXT:    %[[T:v[0-9]+]] = icmp slt i64 %[[I]], %a1
// CHECK-NEXT:    br i1 %[[T]], label %[[BODY]], label %[[DONE:b[0-9]+]]
// CHECK-NEXT:  [[BODY]]:
// A ptradd by i * (the element's size) is a GEP over the element.
// CHECK-NEXT:    %[[P:v[0-9]+]] = getelementptr inbounds i32, ptr %a0, i64 %[[I]]
// CHECK-NEXT:    %[[X:v[0-9]+]] = load float, ptr %[[P]]
// CHECK-NEXT:    %[[S]] = fadd fast float %[[ACC]], %[[X]]
// CHECK-NEXT:    %[[NEXT]] = add i64 %[[I]], 1
// CHECK-NEXT:    br label %[[HEADER]]
// CHECK-NEXT:  [[DONE]]:
// CHECK-NEXT:    ret float %[[ACC]]
// CHECK-NEXT:  }
func.func @sum(%p: !ptr_xdsl.ptr, %n: index) -> f32 attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f32) {
    %size = ptr_xdsl.type_offset f32 : index
    %off = arith.muli %i, %size : index
    %q = ptr_xdsl.ptradd %p, %off : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
    %x = ptr_xdsl.load %q : !ptr_xdsl.ptr -> f32
    %s = arith.addf %acc, %x fastmath<fast> : f32
    scf.yield %s : f32
  }
  func.return %r : f32
}

// An scf.if with results joins its branches with phis; overflow flags carry over; a
// private definition is internal, and noinline where outline-loop-nests says so.

// CHECK-LABEL: define internal i32 @pick(i1 %a0, i32 %a1) noinline {
// CHECK-NEXT:  entry:
// CHECK-NEXT:    br i1 %a0, label %[[THEN:b[0-9]+]], label %[[ELSE:b[0-9]+]]
// CHECK-NEXT:  [[THEN]]:
// CHECK-NEXT:    %[[A:v[0-9]+]] = add nuw nsw i32 %a1, 7
// CHECK-NEXT:    br label %[[JOIN:b[0-9]+]]
// CHECK-NEXT:  [[ELSE]]:
// CHECK-NEXT:    %[[B:v[0-9]+]] = call i32 @llvm.smax.i32(i32 %a1, i32 -3)
// CHECK-NEXT:    br label %[[JOIN]]
// CHECK-NEXT:  [[JOIN]]:
// CHECK-NEXT:    %[[R:v[0-9]+]] = phi i32 [ %[[A]], %[[THEN]] ], [ %[[B]], %[[ELSE]] ]
// CHECK-NEXT:    ret i32 %[[R]]
func.func private @pick(%c: i1, %x: i32) -> i32 attributes {stoicc.no_inline} {
  %r = scf.if %c -> (i32) {
    %seven = arith.constant 7 : i32
    %a = arith.addi %x, %seven overflow<nsw, nuw> : i32
    scf.yield %a : i32
  } else {
    %m3 = arith.constant -3 : i32
    %b = arith.maxsi %x, %m3 : i32
    scf.yield %b : i32
  }
  func.return %r : i32
}

// What the functions call and the module does not define is declared once.
// CHECK: declare i32 @llvm.smax.i32(i32, i32)
