// RUN: stoicc opt %s -p hoist-constants | filecheck %s

// Each function keeps one constant per value and type, at its entry, in order of first
// appearance; the loop bodies' copies are gone. -0.0 and 0.0 differ (the attribute
// compares bits), as do 1 : index and 1 : i32.

// CHECK-LABEL: func.func @k(%n: index, %m: memref<?xf32>) {
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK-NEXT:    %c1 = arith.constant 1 : index
// CHECK-NEXT:    %z = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:    %nz = arith.constant -0.000000e+00 : f32
// CHECK-NEXT:    %one = arith.constant 1 : i32
// CHECK-NEXT:    scf.for %i = %c0 to %n step %c1 {
// CHECK-NEXT:      memref.store %z, %m[%i] : memref<?xf32>
// CHECK-NEXT:      memref.store %nz, %m[%c1] : memref<?xf32>
// CHECK-NEXT:      %s = arith.addi %one, %one : i32
// CHECK-NEXT:    }
// CHECK-NEXT:    scf.for %j = %c0 to %n step %c1 {
// CHECK-NEXT:      memref.store %z, %m[%j] : memref<?xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return
// CHECK-NEXT:  }
// CHECK-NEXT:  func.func @other() -> index {
// CHECK-NEXT:    %c1 = arith.constant 1 : index
// CHECK-NEXT:    func.return %c1 : index
// CHECK-NEXT:  }
func.func @k(%n: index, %m: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
    %z = arith.constant 0.0 : f32
    memref.store %z, %m[%i] : memref<?xf32>
    %nz = arith.constant -0.0 : f32
    %c1b = arith.constant 1 : index
    memref.store %nz, %m[%c1b] : memref<?xf32>
    %one = arith.constant 1 : i32
    %s = arith.addi %one, %one : i32
  }
  %c0b = arith.constant 0 : index
  %c1c = arith.constant 1 : index
  scf.for %j = %c0b to %n step %c1c {
    %z2 = arith.constant 0.0 : f32
    memref.store %z2, %m[%j] : memref<?xf32>
  }
  func.return
}
func.func @other() -> index {
  %c1 = arith.constant 1 : index
  func.return %c1 : index
}
