// RUN: stoicc opt %s -p convert-cf-to-llvm | filecheck %s

// Branches keep their block arguments, which the llvmlite translator turns into phis.

// CHECK-LABEL: func.func @count(%n: i64) -> i64
// CHECK-NEXT:    %zero = llvm.mlir.constant(0) : i64
// CHECK-NEXT:    %one = llvm.mlir.constant(1) : i64
// CHECK-NEXT:    llvm.br ^header(%zero : i64)
// CHECK-NEXT:  ^header(%i: i64):
// CHECK-NEXT:    %done = llvm.icmp "sge" %i, %n : i64
// CHECK-NEXT:    llvm.cond_br %done, ^exit(%i : i64), ^body
// CHECK-NEXT:  ^body:
// CHECK-NEXT:    %next = llvm.add %i, %one : i64
// CHECK-NEXT:    llvm.br ^header(%next : i64)
// CHECK-NEXT:  ^exit(%r: i64):
// CHECK-NEXT:    func.return %r : i64
func.func @count(%n: i64) -> i64 {
  %zero = llvm.mlir.constant(0) : i64
  %one = llvm.mlir.constant(1) : i64
  cf.br ^header(%zero : i64)
^header(%i: i64):
  %done = llvm.icmp "sge" %i, %n : i64
  cf.cond_br %done, ^exit(%i : i64), ^body
^body:
  %next = llvm.add %i, %one : i64
  cf.br ^header(%next : i64)
^exit(%r: i64):
  func.return %r : i64
}
