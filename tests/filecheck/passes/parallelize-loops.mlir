// RUN: stoicc opt %s -p mark-parallel-loops | filecheck %s --check-prefix=MARK
// RUN: stoicc opt %s -p mark-parallel-loops,lower-memory-to-ptr,lower-memory-to-ptr{signatures=true},parallelize-loops{min_work=0} | filecheck %s
// RUN: stoicc opt %s -p mark-parallel-loops,lower-memory-to-ptr,lower-memory-to-ptr{signatures=true},parallelize-loops | filecheck %s --check-prefix=SMALL

// @tiles writes out[i, j] for j in its column tile [j0, min(j0 + 4, n)) only: its
// iterations are independent and it is marked. @shifted writes out[0, j0 + 1], which the
// next iteration's tile holds (j0 + 1 may reach min(j0 + 1, n)): it stays serial.

// MARK-LABEL: func.func @tiles
// MARK:         } {stoicc.parallel}
// MARK-LABEL: func.func @shifted
// MARK-NOT:     stoicc.parallel

// A register intrinsic (vpdpbusd, vpermi2var, vdpbf16ps) computes a value like any vector
// op; an AMX tile instruction changes the thread's tile state: its loop stays serial.
// MARK-LABEL: func.func @register_intrinsic
// MARK:         } {stoicc.parallel}
// MARK-LABEL: func.func @tile_state
// MARK-NOT:     stoicc.parallel

// The marked loop becomes a call of the pool's entry with a context (on the caller's
// stack) holding its free values (out, x, n), the iteration count and the estimated work
// of one iteration;
// @tiles.par0 reads them and passes them, with iterations [start, stop), to
// @tiles.par0.loop, which holds the loop (its buffers noalias arguments, as @tiles's).
// CHECK-LABEL: func.func @tiles
// CHECK:         %[[CTX:.*]] = llvm.alloca %{{.*}} x i64 {alignment = 64 : i64} : (i64) -> !llvm.ptr
// CHECK-NOT:     aligned_alloc
// CHECK:         ptr_xdsl.store
// CHECK:         %{{.*}} = arith.divui
// CHECK:         %[[FN:.*]] = llvm.mlir.addressof @tiles.par0 : !llvm.ptr
// CHECK:         %[[P:.*]] = builtin.unrealized_conversion_cast %[[FN]] : !llvm.ptr to !ptr_xdsl.ptr
// CHECK-NEXT:    func.call @stoicc_parallel_for(%[[P]], %{{.*}}, %{{.*}}, %{{.*}}) : (!ptr_xdsl.ptr, !ptr_xdsl.ptr, i64, i64) -> ()
// CHECK-NOT:     func.call @free
// CHECK-NOT:     scf.for
// CHECK:       func.func private @tiles.par0(%{{.*}}: !ptr_xdsl.ptr, %[[START:.*]]: i64, %[[STOP:.*]]: i64) attributes {stoicc.no_inline} {
// CHECK:         ptr_xdsl.load
// CHECK:         func.call @tiles.par0.loop(%{{.*}}, %[[START]], %[[STOP]])
// CHECK:       func.func private @tiles.par0.loop({{.*}}) attributes {{{.*}}stoicc.noalias_args{{.*}}} {
// CHECK-NOT:     ptr_xdsl.load
// CHECK:         %[[LO:.*]] = arith.addi
// CHECK:         %[[HI:.*]] = arith.minui
// CHECK:         scf.for %{{.*}} = %[[LO]] to %[[HI]] step
// A loop of less estimated work than min_work (the default, 2^20, for this one) stays serial.
// SMALL-LABEL: func.func @tiles
// SMALL-NOT:     stoicc_parallel_for
// SMALL:         scf.for

// A loop of merged tiles (StreamKernel's n-tiles: a tile of width t = its step) runs a block
// of iterations [start, stop) as one tile: in @merged.par0.loop its step, and the width its
// body reads, is the block's span.
// CHECK-LABEL: func.func private @merged.par0.loop(
// CHECK:         %[[MLO:.*]] = arith.addi
// CHECK:         %[[MHI:.*]] = arith.minui
// CHECK-NEXT:    %[[SPAN:.*]] = arith.subi %[[MHI]], %[[MLO]] : index
// CHECK-NEXT:    scf.for %[[J0:.*]] = %[[MLO]] to %[[MHI]] step %[[SPAN]] {
// CHECK-NEXT:      %{{.*}} = arith.addi %[[J0]], %[[SPAN]] : index
// CHECK-NOT:     stoicc.merged_tiles

// CHECK-LABEL: func.func @shifted
// CHECK-NOT:     stoicc_parallel_for
// CHECK:         scf.for
// CHECK:       func.func private @stoicc_parallel_for(!ptr_xdsl.ptr, !ptr_xdsl.ptr, i64, i64)

func.func @tiles(%x: memref<?x8xf32>, %out: memref<?x?xf32>, %m: index, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.for %j0 = %c0 to %n step %c4 {
    %e = arith.addi %j0, %c4 : index
    %j1 = arith.minui %e, %n : index
    scf.for %i = %c0 to %m step %c1 {
      scf.for %j = %j0 to %j1 step %c1 {
        %v = memref.load %x[%i, %c0] : memref<?x8xf32>
        memref.store %v, %out[%i, %j] : memref<?x?xf32>
      }
    }
  }
  func.return
}

func.func @merged(%out: memref<1x?xf32>, %n: index, %t: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %f = arith.constant 1.0 : f32
  scf.for %j0 = %c0 to %n step %t {
    %e = arith.addi %j0, %t : index
    %j1 = arith.minui %e, %n : index
    scf.for %j = %j0 to %j1 step %c1 {
      memref.store %f, %out[%c0, %j] : memref<1x?xf32>
    }
  } {stoicc.merged_tiles}
  func.return
}

func.func @shifted(%out: memref<?x?xf32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %f = arith.constant 1.0 : f32
  scf.for %j0 = %c0 to %n step %c1 {
    %j = arith.addi %j0, %c1 : index
    memref.store %f, %out[%c0, %j] : memref<?x?xf32>
  }
  func.return
}

func.func @register_intrinsic(%out: memref<?xvector<16xi32>>, %a: vector<16xi32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %j = %c0 to %n step %c1 {
    %d = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%a, %a, %a) : (vector<16xi32>, vector<16xi32>, vector<16xi32>) -> vector<16xi32>
    memref.store %d, %out[%j] : memref<?xvector<16xi32>>
  }
  func.return
}

func.func @tile_state(%out: memref<?xi8>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %t = arith.constant 0 : i8
  scf.for %j = %c0 to %n step %c1 {
    llvm.call_intrinsic "llvm.x86.tilezero"(%t) : (i8) -> ()
    memref.store %t, %out[%j] : memref<?xi8>
  }
  func.return
}
