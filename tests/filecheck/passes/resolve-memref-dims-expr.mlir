// RUN: stoicc opt %s -p resolve-memref-dims | filecheck %s
// A buffer dim that is a dim expression (tdsl.dims "P+T", "2*T-1") is computed from
// the size-symbol arguments.

// CHECK-LABEL: func.func @expressions
// CHECK:         %[[A:.*]] = arith.addi %{{.*}}, %P : index
// CHECK-NEXT:    %[[B:.*]] = arith.addi %[[A]], %T : index
// CHECK:         %[[C:.*]] = arith.muli %T, %{{.*}} : index
// CHECK-NEXT:    %[[D:.*]] = arith.addi %{{.*}}, %[[C]] : index
// CHECK-NEXT:    "test.op"(%[[B]], %[[D]]) : (index, index) -> ()
func.func @expressions(%x: memref<?x?xf32> {tdsl.dims = ["P+T", "2*T-1"]}, %P: index {tdsl.symbol = "P"}, %T: index {tdsl.symbol = "T"}) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %a = memref.dim %x, %c0 : memref<?x?xf32>
  %b = memref.dim %x, %c1 : memref<?x?xf32>
  "test.op"(%a, %b) : (index, index) -> ()
  func.return
}
