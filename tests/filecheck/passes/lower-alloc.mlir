// RUN: stoicc opt %s -p lower-alloc | filecheck %s

// The byte size is the product of the sizes and the element width, rounded up to
// the alignment as aligned_alloc requires; the pointer becomes the memref through
// ptr_xdsl.from_ptr, which lower-memory-to-ptr and convert-ptr-to-llvm remove.

// CHECK-LABEL: func.func @dynamic(%n: index, %m: index)
// CHECK-NEXT:    %0 = arith.constant 16 : index
// CHECK-NEXT:    %1 = arith.muli %0, %n : index
// CHECK-NEXT:    %2 = arith.muli %1, %m : index
// CHECK-NEXT:    %3 = arith.constant 63 : index
// CHECK-NEXT:    %4 = arith.constant -64 : index
// CHECK-NEXT:    %5 = arith.addi %2, %3 : index
// CHECK-NEXT:    %6 = arith.andi %5, %4 : index
// CHECK-NEXT:    %7 = arith.index_cast %6 : index to i64
// CHECK-NEXT:    %8 = arith.constant 64 : i64
// CHECK-NEXT:    %9 = func.call @aligned_alloc(%8, %7) : (i64, i64) -> !ptr_xdsl.ptr
// CHECK-NEXT:    %a = ptr_xdsl.from_ptr %9 : !ptr_xdsl.ptr -> memref<?x4x?xf32>
// CHECK-NEXT:    %10 = ptr_xdsl.to_ptr %a : memref<?x4x?xf32> -> !ptr_xdsl.ptr
// CHECK-NEXT:    func.call @free(%10) : (!ptr_xdsl.ptr) -> ()
// CHECK-NEXT:    func.return
func.func @dynamic(%n: index, %m: index) {
  %a = memref.alloc(%n, %m) : memref<?x4x?xf32>
  memref.dealloc %a : memref<?x4x?xf32>
  func.return
}

// Static sizes are rounded at compile time; a larger requested alignment wins.

// CHECK-LABEL: func.func @static() -> memref<3x5xf64>
// CHECK-NEXT:    %0 = arith.constant 128 : i64
// CHECK-NEXT:    %1 = arith.constant 128 : i64
// CHECK-NEXT:    %2 = func.call @aligned_alloc(%1, %0) : (i64, i64) -> !ptr_xdsl.ptr
// CHECK-NEXT:    %a = ptr_xdsl.from_ptr %2 : !ptr_xdsl.ptr -> memref<3x5xf64>
// CHECK-NEXT:    func.return %a : memref<3x5xf64>
func.func @static() -> memref<3x5xf64> {
  %a = memref.alloc() {alignment = 128 : i64} : memref<3x5xf64>
  func.return %a : memref<3x5xf64>
}

// The C functions are declared once, after the functions that use them.

// CHECK:       func.func private @aligned_alloc(i64, i64) -> !ptr_xdsl.ptr
// CHECK-NEXT:  func.func private @free(!ptr_xdsl.ptr) -> ()
// CHECK-NEXT:  }
