// RUN: stoicc opt %s -p check-bounds | filecheck %s
// Every load and store of a kernel's buffers runs only inside them: each index must
// be below its axis, and a vector's last lane too. A miss is skipped (a load yields
// zeros) and recorded in the status argument: the 1-based position of the buffer's
// argument, and 1 for a store. A packed buffer's data-dependent length becomes an
// extent argument, named as a size symbol, that memref.dim resolves to.

// CHECK-LABEL: func.func @k(%x: memref<?x64xf32> {tdsl.dims = ["M", #builtin.int<64>]}, %w_values: memref<?xf32> {tdsl.buffer = "values", tdsl.dims = ["extent1_0"]}, %M: index {tdsl.symbol = "M"}, %i: index, %j: index, %extent1: index {tdsl.symbol = "extent1_0"}, %status: memref<2xi64> {tdsl.status = "bounds"})
// CHECK:         %size = memref.dim %x, %{{.*}} : memref<?x64xf32>
// CHECK:         arith.cmpi ult, %i, %size : index
// CHECK:         %[[LANES:.*]] = arith.constant 16 : index
// CHECK-NEXT:    %size_1 = memref.dim %x, %{{.*}} : memref<?x64xf32>
// CHECK-NEXT:    %[[END:.*]] = arith.addi %j, %[[LANES]] : index
// CHECK-NEXT:    %[[FIRST:.*]] = arith.cmpi ult, %j, %size_1 : index
// CHECK-NEXT:    %[[LAST:.*]] = arith.cmpi ule, %[[END]], %size_1 : index
// CHECK-NEXT:    %[[BOTH:.*]] = arith.andi %[[FIRST]], %[[LAST]] : i1
// CHECK-NEXT:    %in_bounds_1 = arith.andi %in_bounds, %[[BOTH]] : i1
// CHECK-NEXT:    %v = scf.if %in_bounds_1 -> (vector<16xf32>) {
// CHECK-NEXT:      %v_1 = vector.load %x[%i, %j] : memref<?x64xf32>, vector<16xf32>
// CHECK-NEXT:      scf.yield %v_1 : vector<16xf32>
// CHECK-NEXT:    } else {
// CHECK-NEXT:      %[[WHERE:.*]] = arith.constant 1 : i64
// CHECK-NEXT:      %[[WHAT:.*]] = arith.constant 0 : i64
// CHECK:           memref.store %[[WHERE]], %status[%{{.*}}] : memref<2xi64>
// CHECK-NEXT:      memref.store %[[WHAT]], %status[%{{.*}}] : memref<2xi64>
// CHECK:           %[[ZERO:.*]] = vector.broadcast %{{.*}} : f32 to vector<16xf32>
// CHECK-NEXT:      scf.yield %[[ZERO]] : vector<16xf32>
// CHECK:         %size_2 = memref.dim %w_values, %{{.*}} : memref<?xf32>
// CHECK:         scf.if %in_bounds_2 {
// CHECK-NEXT:      memref.store %f, %w_values[%i] : memref<?xf32>
// CHECK-NEXT:    } else {
// CHECK-NEXT:      %[[WHERE2:.*]] = arith.constant 2 : i64
// CHECK-NEXT:      %[[WHAT2:.*]] = arith.constant 1 : i64
// CHECK:         "test.op"(%v) : (vector<16xf32>) -> ()
func.func @k(%x: memref<?x64xf32> {tdsl.dims = ["M", #builtin.int<64>]}, %w_values: memref<?xf32> {tdsl.buffer = "values"}, %M: index {tdsl.symbol = "M"}, %i: index, %j: index) {
  %v = vector.load %x[%i, %j] : memref<?x64xf32>, vector<16xf32>
  %f = arith.constant 1.0 : f32
  memref.store %f, %w_values[%i] : memref<?xf32>
  "test.op"(%v) : (vector<16xf32>) -> ()
  func.return
}

// A function without argument attributes (no packed buffers) gets the status only;
// an allocation's misses report -1 (a temporary).
// CHECK-LABEL: func.func @plain(%a: memref<4xf32>, %i: index, %status: memref<2xi64> {tdsl.status = "bounds"})
// CHECK:         %size = memref.dim %a, %{{.*}} : memref<4xf32>
// CHECK:         %t = memref.alloc() : memref<8xf32>
// CHECK:         %size_1 = memref.dim %t, %{{.*}} : memref<8xf32>
// CHECK:         } else {
// CHECK-NEXT:      %{{.*}} = arith.constant -1 : i64
func.func @plain(%a: memref<4xf32>, %i: index) {
  %v = memref.load %a[%i] : memref<4xf32>
  %t = memref.alloc() : memref<8xf32>
  memref.store %v, %t[%i] : memref<8xf32>
  func.return
}
