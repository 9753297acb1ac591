// RUN: stoicc opt %s -p lower-scf-to-cf | filecheck %s
// RUN: stoicc opt %s -p convert-scf-to-cf | filecheck %s

// The same branches as xDSL's convert-scf-to-cf, in the same block order; the nests are
// lowered last first, so that each split moves only the ops of one nest (linear time).

// CHECK-LABEL: func.func @nests(%n: index, %m: memref<?xf32>, %v: f32, %c: i1) {
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK-NEXT:    %c1 = arith.constant 1 : index
// CHECK-NEXT:    cf.br ^bb1(%c0 : index)
// CHECK-NEXT:  ^bb1(%i: index):
// CHECK-NEXT:    %0 = arith.cmpi slt, %i, %n : index
// CHECK-NEXT:    cf.cond_br %0, ^bb2, ^bb3
// CHECK-NEXT:  ^bb2:
// CHECK-NEXT:    memref.store %v, %m[%i] : memref<?xf32>
// CHECK-NEXT:    %1 = arith.addi %i, %c1 : index
// CHECK-NEXT:    cf.br ^bb1(%1 : index)
// CHECK-NEXT:  ^bb3:
// CHECK-NEXT:    cf.br ^bb4(%c0 : index)
// CHECK-NEXT:  ^bb4(%j: index):
// CHECK-NEXT:    %2 = arith.cmpi slt, %j, %n : index
// CHECK-NEXT:    cf.cond_br %2, ^bb5, ^bb11
// CHECK-NEXT:  ^bb5:
// CHECK-NEXT:    cf.cond_br %c, ^bb6, ^bb10
// CHECK-NEXT:  ^bb6:
// CHECK-NEXT:    cf.br ^bb7(%c0 : index)
// CHECK-NEXT:  ^bb7(%k: index):
// CHECK-NEXT:    %3 = arith.cmpi slt, %k, %j : index
// CHECK-NEXT:    cf.cond_br %3, ^bb8, ^bb9
// CHECK-NEXT:  ^bb8:
// CHECK-NEXT:    memref.store %v, %m[%k] : memref<?xf32>
// CHECK-NEXT:    %4 = arith.addi %k, %c1 : index
// CHECK-NEXT:    cf.br ^bb7(%4 : index)
// CHECK-NEXT:  ^bb9:
// CHECK-NEXT:    cf.br ^bb10
// CHECK-NEXT:  ^bb10:
// CHECK-NEXT:    %5 = arith.addi %j, %c1 : index
// CHECK-NEXT:    cf.br ^bb4(%5 : index)
// CHECK-NEXT:  ^bb11:
// CHECK-NEXT:    func.return
// CHECK-NEXT:  }
// CHECK-NEXT:  }

func.func @nests(%n: index, %m: memref<?xf32>, %v: f32, %c: i1) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
    memref.store %v, %m[%i] : memref<?xf32>
  }
  scf.for %j = %c0 to %n step %c1 {
    scf.if %c {
      scf.for %k = %c0 to %j step %c1 {
        memref.store %v, %m[%k] : memref<?xf32>
      }
    }
  }
  func.return
}
