// RUN: stoicc opt %s -p outline-loop-nests | filecheck %s

// Each top-level nest of a kernel with two or more becomes a private, no_inline function
// after the kernel, called in its place. Its arguments are the kernel arguments and
// allocations it uses; the pure ops computing the rest (%c0, %c1, %f) are cloned into it,
// and those that only the nests used leave the kernel (@derived's %c0 and %c1). The kernel's noalias promise
// carries over where every pointer is a kernel argument or an allocation.

// CHECK-LABEL: func.func @k(%a: !ptr_xdsl.ptr, %n: index) -> f32 attributes {stoicc.noalias_args} {
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK-NEXT:    %c1 = arith.constant 1 : index
// CHECK-NEXT:    %f = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:    %c64 = arith.constant 64 : i64
// CHECK-NEXT:    %t = func.call @aligned_alloc(%c64, %c64) : (i64, i64) -> !ptr_xdsl.ptr
// CHECK-NEXT:    func.call @k.nest0(%n, %a, %t) : (index, !ptr_xdsl.ptr, !ptr_xdsl.ptr) -> ()
// CHECK-NEXT:    func.call @k.nest1(%n, %t) : (index, !ptr_xdsl.ptr) -> ()
// CHECK-NEXT:    %s = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %f) -> (f32) {
// CHECK:         func.call @free(%t) : (!ptr_xdsl.ptr) -> ()
// CHECK-NEXT:    func.return %s : f32
// CHECK-NEXT:  }
// CHECK-NEXT:  func.func private @k.nest0(%n: index, %a: !ptr_xdsl.ptr, %t: !ptr_xdsl.ptr) attributes {stoicc.no_inline, stoicc.noalias_args} {
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK-NEXT:    %c1 = arith.constant 1 : index
// CHECK-NEXT:    scf.for %i = %c0 to %n step %c1 {
// CHECK-NEXT:      %p = ptr_xdsl.ptradd %a, %i : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
// CHECK-NEXT:      %v = ptr_xdsl.load %p : !ptr_xdsl.ptr -> f32
// CHECK-NEXT:      %q = ptr_xdsl.ptradd %t, %i : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
// CHECK-NEXT:      ptr_xdsl.store %v, %q : f32, !ptr_xdsl.ptr
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return
// CHECK-NEXT:  }
// CHECK-NEXT:  func.func private @k.nest1(%n: index, %t: !ptr_xdsl.ptr) attributes {stoicc.no_inline, stoicc.noalias_args} {
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK-NEXT:    %c1 = arith.constant 1 : index
// CHECK-NEXT:    %f = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:    scf.for %i = %c0 to %n step %c1 {
func.func @k(%a: !ptr_xdsl.ptr, %n: index) -> f32 attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %f = arith.constant 0.0 : f32
  %c64 = arith.constant 64 : i64
  %t = func.call @aligned_alloc(%c64, %c64) : (i64, i64) -> !ptr_xdsl.ptr
  scf.for %i = %c0 to %n step %c1 {
    %p = ptr_xdsl.ptradd %a, %i : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
    %v = ptr_xdsl.load %p : !ptr_xdsl.ptr -> f32
    %q = ptr_xdsl.ptradd %t, %i : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
    ptr_xdsl.store %v, %q : f32, !ptr_xdsl.ptr
  }
  scf.for %i = %c0 to %n step %c1 {
    %q = ptr_xdsl.ptradd %t, %i : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
    ptr_xdsl.store %f, %q : f32, !ptr_xdsl.ptr
  }
  // a loop whose result the kernel uses stays
  %s = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %f) -> (f32) {
    %q = ptr_xdsl.ptradd %t, %i : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
    %v = ptr_xdsl.load %q : !ptr_xdsl.ptr -> f32
    %r = arith.addf %acc, %v : f32
    scf.yield %r : f32
  }
  func.call @free(%t) : (!ptr_xdsl.ptr) -> ()
  func.return %s : f32
}

// A pointer that is neither a kernel argument nor an allocation (here one past %a)
// may alias another: the nest promises nothing. A function without the promise passes
// none on; one nest alone stays.

// CHECK-LABEL: func.func @derived(%a: !ptr_xdsl.ptr, %n: index) attributes {stoicc.noalias_args} {
// CHECK-NEXT:    %b = func.call @offset(%a) : (!ptr_xdsl.ptr) -> !ptr_xdsl.ptr
// CHECK-NEXT:    func.call @derived.nest0(%n, %a, %b) : (index, !ptr_xdsl.ptr, !ptr_xdsl.ptr) -> ()
// CHECK-NEXT:    func.call @derived.nest1(%n, %b, %a) : (index, !ptr_xdsl.ptr, !ptr_xdsl.ptr) -> ()
// CHECK-NEXT:    func.return
// CHECK-LABEL: func.func private @derived.nest0(%n: index, %a: !ptr_xdsl.ptr, %b: !ptr_xdsl.ptr) attributes {stoicc.no_inline} {
// CHECK-LABEL: func.func private @derived.nest1(
// CHECK-SAME:    attributes {stoicc.no_inline} {
func.func @derived(%a: !ptr_xdsl.ptr, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %b = func.call @offset(%a) : (!ptr_xdsl.ptr) -> !ptr_xdsl.ptr
  scf.for %i = %c0 to %n step %c1 {
    %v = ptr_xdsl.load %a : !ptr_xdsl.ptr -> f32
    ptr_xdsl.store %v, %b : f32, !ptr_xdsl.ptr
  }
  scf.for %i = %c0 to %n step %c1 {
    %v = ptr_xdsl.load %b : !ptr_xdsl.ptr -> f32
    ptr_xdsl.store %v, %a : f32, !ptr_xdsl.ptr
  }
  func.return
}

// CHECK-LABEL: func.func @single(%n: index) {
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK-NEXT:    %c1 = arith.constant 1 : index
// CHECK-NEXT:    scf.for
func.func @single(%n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
  }
  func.return
}

func.func private @aligned_alloc(i64, i64) -> !ptr_xdsl.ptr
func.func private @offset(!ptr_xdsl.ptr) -> !ptr_xdsl.ptr
func.func private @free(!ptr_xdsl.ptr) -> ()
