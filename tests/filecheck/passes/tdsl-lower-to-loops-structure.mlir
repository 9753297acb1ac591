// RUN: stoicc opt %s -p tdsl-lower-to-loops,canonicalize | filecheck %s
// concat copies each input at its running offset along the axis; a transpose with
// a permutation loads at the permuted indices; a slice loads at the indices plus
// its starts, computed from the size-symbol arguments (P here).

// CHECK-LABEL: func.func @structure
// CHECK:         memref.load %x[%i, %j, %k]
// CHECK-NEXT:    memref.store %{{.*}}, %cat[%i, %j, %k]
// CHECK:         %[[XLEN:.*]] = memref.dim %x, %{{.*}} : memref<2x?x4xf32>
// CHECK:         %[[Y:.*]] = memref.load %y[%i_1, %j_1, %k_1]
// CHECK-NEXT:    %[[AT:.*]] = arith.addi %j_1, %[[XLEN]] : index
// CHECK-NEXT:    memref.store %[[Y]], %cat[%i_1, %[[AT]], %k_1]
// CHECK:         %[[V:.*]] = memref.load %x[%k_2, %i_2, %j_2] : memref<2x?x4xf32>
// CHECK-NEXT:    memref.store %[[V]], %t[%i_2, %j_2, %k_2] : memref<?x4x2xf32>
// CHECK:         %[[ROW:.*]] = arith.addi %j_3, %P : index
// CHECK-NEXT:    %[[S:.*]] = memref.load %cat[%i_3, %[[ROW]], %k_3]
// CHECK-NEXT:    memref.store %[[S]], %s[%i_3, %j_3, %k_3]
func.func @structure(%x: memref<2x?x4xf32>, %y: memref<2x?x4xf32>, %cat: memref<2x?x4xf32>, %t: memref<?x4x2xf32>, %s: memref<2x?x4xf32>, %P: index {tdsl.symbol = "P"}, %T: index {tdsl.symbol = "T"}) {
  tdsl.concat %x, %y into %cat {axis = 1 : i64} : memref<2x?x4xf32>, memref<2x?x4xf32> into memref<2x?x4xf32>
  tdsl.transpose %x into %t {perm = array<i64: 1, 2, 0>} : memref<2x?x4xf32> into memref<?x4x2xf32>
  tdsl.slice %cat into %s {starts = [#builtin.int<0>, "P", #builtin.int<0>], stops = [#builtin.int<2>, "P+T", #builtin.int<4>]} : memref<2x?x4xf32> into memref<2x?x4xf32>
  func.return
}
