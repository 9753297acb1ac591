// RUN: stoicc opt %s -p convert-func-to-llvm | filecheck %s

// A function that promises unaliased buffers gets llvm.noalias on every pointer
// argument; other llvm.* argument attributes are kept, foreign ones dropped.

// CHECK-LABEL: llvm.func @kernel(%a: !llvm.ptr {llvm.noalias}, %b: !llvm.ptr {llvm.align = 64 : i64, llvm.noalias}, %n: i64 {llvm.noundef}) -> f32 attributes {stoicc.kind = "kernel"} {
// CHECK-NEXT:    %0 = llvm.call @helper(%a, %n) : (!llvm.ptr, i64) -> f32
// CHECK-NEXT:    llvm.call @sink(%0) : (f32) -> ()
// CHECK-NEXT:    llvm.return %0 : f32
// CHECK-NEXT:  }
func.func @kernel(%a: !llvm.ptr, %b: !llvm.ptr {llvm.align = 64 : i64}, %n: i64 {llvm.noundef, tdsl.symbol = "N"}) -> f32 attributes {stoicc.noalias_args, stoicc.kind = "kernel"} {
  %0 = func.call @helper(%a, %n) : (!llvm.ptr, i64) -> f32
  func.call @sink(%0) : (f32) -> ()
  func.return %0 : f32
}

// Without the promise, pointers stay as they are.

// CHECK-LABEL: llvm.func @helper(%p: !llvm.ptr, %m: i64) -> f32 {
// CHECK-NEXT:    %1 = llvm.load %p : !llvm.ptr -> f32
// CHECK-NEXT:    llvm.return %1 : f32
// CHECK-NEXT:  }
func.func @helper(%p: !llvm.ptr, %m: i64) -> f32 {
  %0 = llvm.load %p : !llvm.ptr -> f32
  func.return %0 : f32
}

// Declarations become external llvm.func declarations; no result means void.

// CHECK-LABEL: llvm.func @sink(f32)
// CHECK-NOT:   func.func
func.func private @sink(f32) -> ()

// A private definition has internal linkage; stoicc.no_inline becomes the no_inline property.

// CHECK-LABEL: llvm.func internal @nest(%q: !llvm.ptr) attributes {no_inline} {
func.func private @nest(%q: !llvm.ptr) attributes {stoicc.no_inline} {
  func.return
}
