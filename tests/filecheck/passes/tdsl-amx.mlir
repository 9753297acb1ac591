// RUN: stoicc opt %s -p 'tdsl-amx,canonicalize,cse' | filecheck %s

// A bf16 linear with N and K multiples of 32 runs on AMX tiles: the tile configuration
// loaded once, a panel of 32 rows of w packed per block of 32 columns (per 32 k and 16
// rows, their dwords transposed 16 x 16 by shuffles), 32-row blocks of x multiplied with
// four accumulator tiles (tmm0-3) from two tiles of x (tmm4-5) and two of the panel
// (tmm6-7) per 32 steps of k, the accumulators stored straight into the f32 y; the rows
// past the last whole block come from a zero-padded copy of x, through a 32 x 32 buffer.
// CHECK-LABEL: func.func @amx
// CHECK:         llvm.call_intrinsic "llvm.x86.ldtilecfg"(%{{.*}})
// CHECK:         scf.for %n0 = %{{.*}} to %{{.*}} step %[[C32:.*]] {
// CHECK:           scf.for %kb =
// CHECK-COUNT-16:      vector.load %w{{.*}} vector<32xbf16>
// CHECK-COUNT-64:      vector.shuffle
// CHECK-COUNT-16:      vector.store
// CHECK:           scf.for %m0 =
// CHECK-COUNT-4:     llvm.call_intrinsic "llvm.x86.tilezero"(%{{.*}})
// CHECK:             scf.for %kb{{.*}} =
// CHECK-COUNT-4:       llvm.call_intrinsic "llvm.x86.tileloadd64"(%{{.*}}, %{{.*}}, %{{.*}})
// CHECK-COUNT-4:       llvm.call_intrinsic "llvm.x86.tdpbf16ps"(%{{.*}}, %{{.*}}, %{{.*}})
// CHECK:             }
// CHECK-COUNT-4:     llvm.call_intrinsic "llvm.x86.tilestored64"(%{{.*}}, %{{.*}}, %{{.*}})
// CHECK:           scf.if
// CHECK:         llvm.call_intrinsic "llvm.x86.tilerelease"()
// CHECK-NOT:     tdsl.linear
func.func @amx(%x: memref<?x64xbf16>, %w: memref<64x64xbf16>, %out: memref<?x64xf32>) {
  tdsl.linear %x, %w into %out : memref<?x64xbf16>, memref<64x64xbf16> into memref<?x64xf32>
  func.return
}

// An i8 linear (an i32 result) runs on tdpbssd: the panel packed by 64 bytes (64 k) of
// 16 rows at a time, the same blocks.
// CHECK-LABEL: func.func @amx_int8
// CHECK:         scf.for %kb =
// CHECK-COUNT-16:  vector.load %w{{.*}} vector<64xi8>
// CHECK:         scf.for %m0 =
// CHECK-COUNT-4:     llvm.call_intrinsic "llvm.x86.tdpbssd"(%{{.*}}, %{{.*}}, %{{.*}})
// CHECK-COUNT-4:     llvm.call_intrinsic "llvm.x86.tilestored64"(%{{.*}}, %{{.*}}, %{{.*}})
func.func @amx_int8(%x: memref<?x128xi8>, %w: memref<64x128xi8>, %out: memref<?x64xi32>) {
  tdsl.linear %x, %w into %out : memref<?x128xi8>, memref<64x128xi8> into memref<?x64xi32>
  func.return
}

// Left to tdsl-microkernel: N not a multiple of 32, f32 operands, a bias; and to
// tdsl-vectorize-integer an i8 linear whose K is not a multiple of 64.
// CHECK-LABEL: func.func @not_amx
// CHECK-NOT:     llvm.call_intrinsic
// CHECK-COUNT-4: tdsl.linear
func.func @not_amx(%x: memref<?x64xbf16>, %w: memref<48x64xbf16>, %out: memref<?x48xf32>,
                   %xf: memref<?x64xf32>, %wf: memref<64x64xf32>, %outf: memref<?x64xf32>,
                   %w2: memref<64x64xbf16>, %b: memref<64xbf16>, %out2: memref<?x64xf32>,
                   %xi: memref<?x96xi8>, %wi: memref<64x96xi8>, %outi: memref<?x64xi32>) {
  tdsl.linear %x, %w into %out : memref<?x64xbf16>, memref<48x64xbf16> into memref<?x48xf32>
  tdsl.linear %xf, %wf into %outf : memref<?x64xf32>, memref<64x64xf32> into memref<?x64xf32>
  tdsl.linear %x, %w2 bias %b into %out2 : memref<?x64xbf16>, memref<64x64xbf16> bias memref<64xbf16> into memref<?x64xf32>
  tdsl.linear %xi, %wi into %outi : memref<?x96xi8>, memref<64x96xi8> into memref<?x64xi32>
  func.return
}
