// RUN: stoicc opt %s -p cse-pure | filecheck %s

// An op without effects, regions or successors is replaced by an equal one (class,
// operands, result types, properties, attributes) earlier in its block or an enclosing
// one: the loop body reuses %off and the kernel's %c4. Ops of sibling loops do not
// dominate each other (the second loop computes %q again), loads are not merged (they
// read memory), and ops that differ in a property (the overflow flags) stay apart.

// CHECK-LABEL: func.func @k(%n: index, %m: memref<?xf32>, %p: !ptr_xdsl.ptr) {
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK-NEXT:    %c1 = arith.constant 1 : index
// CHECK-NEXT:    %c4 = arith.constant 4 : index
// CHECK-NEXT:    scf.for %i = %c0 to %n step %c1 {
// CHECK-NEXT:      %off = arith.muli %i, %c4 : index
// CHECK-NEXT:      %a = ptr_xdsl.ptradd %p, %off : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
// CHECK-NEXT:      %x = ptr_xdsl.load %a : !ptr_xdsl.ptr -> f32
// CHECK-NEXT:      %y = ptr_xdsl.load %a : !ptr_xdsl.ptr -> f32
// CHECK-NEXT:      %s = arith.addf %x, %y : f32
// CHECK-NEXT:      ptr_xdsl.store %s, %a : f32, !ptr_xdsl.ptr
// CHECK-NEXT:      %w = arith.muli %i, %c4 overflow<nsw> : index
// CHECK-NEXT:    }
// CHECK-NEXT:    scf.for %j = %c0 to %n step %c1 {
// CHECK-NEXT:      %q = arith.muli %j, %c4 : index
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return
// CHECK-NEXT:  }
func.func @k(%n: index, %m: memref<?xf32>, %p: !ptr_xdsl.ptr) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.for %i = %c0 to %n step %c1 {
    %off = arith.muli %i, %c4 : index
    %a = ptr_xdsl.ptradd %p, %off : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
    %x = ptr_xdsl.load %a : !ptr_xdsl.ptr -> f32
    %c4b = arith.constant 4 : index
    %off2 = arith.muli %i, %c4b : index
    %a2 = ptr_xdsl.ptradd %p, %off2 : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
    %y = ptr_xdsl.load %a2 : !ptr_xdsl.ptr -> f32
    %s = arith.addf %x, %y : f32
    ptr_xdsl.store %s, %a2 : f32, !ptr_xdsl.ptr
    %w = arith.muli %i, %c4 overflow<nsw> : index
  }
  scf.for %j = %c0 to %n step %c1 {
    %q = arith.muli %j, %c4 : index
  }
  func.return
}
