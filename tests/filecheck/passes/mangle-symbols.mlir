// RUN: stoicc opt %s -p mangle-symbols | filecheck %s
// RUN: not stoicc opt %s -p lower-alloc 2>&1 | filecheck %s --check-prefix=UNMANGLED

// Every defined function moves to the stoicc_ prefix and the calls to it follow:
// a kernel named like a C library function (here free, which lower-alloc calls)
// no longer takes that function's symbol. Declarations keep their names.

// CHECK:      func.func @stoicc_free(%n: index) {
// CHECK-NEXT:   %a = memref.alloc(%n) : memref<?xf32>
// CHECK-NEXT:   memref.dealloc %a : memref<?xf32>
// CHECK-NEXT:   func.call @stoicc_helper(%n) : (index) -> ()
// CHECK-NEXT:   func.call @tanhf(%n) : (index) -> ()
// CHECK:      func.func @stoicc_helper(%m: index) {
// CHECK:      func.func private @tanhf(index) -> ()

// Without it, lower-alloc cannot call the C library's free:
// UNMANGLED: lower-alloc: @free is defined in this module, but the code calls the C library's; run mangle-symbols first
func.func @free(%n: index) {
  %a = memref.alloc(%n) : memref<?xf32>
  memref.dealloc %a : memref<?xf32>
  func.call @helper(%n) : (index) -> ()
  func.call @tanhf(%n) : (index) -> ()
  func.return
}
func.func @helper(%m: index) {
  func.return
}
func.func private @tanhf(index) -> ()
