// RUN: stoicc opt %s -p tdsl-bufferize | filecheck %s
// A value whose dim is an expression (P+T) gets an allocation of that size, computed
// from the symbol arguments; the symbols are only the plain dims of the parameters.
// A reshape is a view of its operand's buffer (memref.reinterpret_cast, no copy).

// CHECK-LABEL: func.func @f(%c: memref<?x8xf32> {{.*}}, %n: memref<?x8xf32> {{.*}}, %out0: memref<4x?x2xf32> {tdsl.dims = [#builtin.int<4>, "P+T", #builtin.int<2>], tdsl.output}, %P: index {tdsl.symbol = "P"}, %T: index {tdsl.symbol = "T"})
// CHECK:         %[[A:.*]] = arith.addi %{{.*}}, %P : index
// CHECK-NEXT:    %[[B:.*]] = arith.addi %[[A]], %T : index
// CHECK-NEXT:    %k = memref.alloc(%[[B]]) {alignment = 64 : i64} : memref<?x8xf32>
// CHECK-NEXT:    tdsl.concat %c, %n into %k {axis = 0 : i64} : memref<?x8xf32>, memref<?x8xf32> into memref<?x8xf32>
// CHECK:         tdsl.add %k, %{{.*}} into %[[SUM:.*]] : memref<?x8xf32>, memref<f32> into memref<?x8xf32>
// CHECK:         %[[VIEW:.*]] = memref.reinterpret_cast %[[SUM]] to offset: [%{{.*}}], sizes: [4, %{{.*}}, 2], strides: [%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x8xf32> to memref<4x?x2xf32>
// CHECK-NEXT:    "memref.copy"(%[[VIEW]], %out0) : (memref<4x?x2xf32>, memref<4x?x2xf32>) -> ()
func.func @f(%c: !tdsl.tensor<[P, 8], f32> {tdsl.name = "c"}, %n: !tdsl.tensor<[T, 8], f32> {tdsl.name = "n"}) -> !tdsl.tensor<[4, "P+T", 2], f32> {
  %k = tdsl.concat %c, %n {axis = 0 : i64} : !tdsl.tensor<[P, 8], f32>, !tdsl.tensor<[T, 8], f32> -> !tdsl.tensor<["P+T", 8], f32>
  %0 = tdsl.constant {value = 1.000000e+00 : f32} : !tdsl.tensor<[], f32>
  %1 = tdsl.add %k, %0 : !tdsl.tensor<["P+T", 8], f32>, !tdsl.tensor<[], f32> -> !tdsl.tensor<["P+T", 8], f32>
  %2 = tdsl.reshape %1 {shape = [#builtin.int<4>, "P+T", #builtin.int<2>]} : !tdsl.tensor<["P+T", 8], f32> -> !tdsl.tensor<[4, "P+T", 2], f32>
  func.return %2 : !tdsl.tensor<[4, "P+T", 2], f32>
}
