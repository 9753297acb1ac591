// RUN: stoicc opt %s -p resolve-memref-dims | filecheck %s
// memref.dim answers from what defines the size: a static dim is a constant, a
// kernel buffer's dynamic dim is its size symbol (tdsl.dims names it), an
// allocation's dynamic dim is its operand.

// CHECK-LABEL: func.func @dims
// CHECK-NEXT:    %c0 = arith.constant 0 : index
// CHECK-NEXT:    %c1 = arith.constant 1 : index
// CHECK-NEXT:    %[[S:.*]] = arith.constant 64 : index
// CHECK-NEXT:    %a = memref.alloc(%N) : memref<8x?xf32>
// CHECK-NEXT:    "test.op"(%M, %[[S]], %N) : (index, index, index) -> ()
func.func @dims(%x: memref<?x64xf32> {tdsl.dims = ["M", #builtin.int<64>]}, %M: index {tdsl.symbol = "M"}, %N: index {tdsl.symbol = "N"}) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = memref.dim %x, %c0 : memref<?x64xf32>
  %k = memref.dim %x, %c1 : memref<?x64xf32>
  %a = memref.alloc(%N) : memref<8x?xf32>
  %n = memref.dim %a, %c1 : memref<8x?xf32>
  "test.op"(%m, %k, %n) : (index, index, index) -> ()
  func.return
}
