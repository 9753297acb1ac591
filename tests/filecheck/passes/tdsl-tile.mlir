// RUN: stoicc opt %s -p tdsl-tile | filecheck %s
// RUN: stoicc opt %s -p 'tdsl-tile{sizes=8,32,64}' | filecheck %s --check-prefix=SIZES
// Matrix products get the target's tile sizes [tm, tn, tk], or the ones asked for.

// CHECK-LABEL: func.func @tile
// CHECK:         tdsl.linear %x, %w {tile = array<i64: 16, 48, 1024>}
// CHECK:         tdsl.matmul %x, %v {tile = array<i64: 16, 256, 128>}
// SIZES:         tdsl.linear %x, %w {tile = array<i64: 8, 32, 64>}
// SIZES:         tdsl.matmul %x, %v {tile = array<i64: 8, 32, 64>}
func.func @tile(%x: !tdsl.tensor<[M, 64], f32>, %w: !tdsl.tensor<[128, 64], f32>, %v: !tdsl.tensor<[64, 128], f32>) -> (!tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[M, 128], f32>) {
  %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[128, 64], f32> -> !tdsl.tensor<[M, 128], f32>
  %1 = tdsl.matmul %x, %v : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[64, 128], f32> -> !tdsl.tensor<[M, 128], f32>
  func.return %0, %1 : !tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[M, 128], f32>
}

// Tiles hold whole format granules: k rounds up to a multiple of the 48-wide
// hybrid tile, n to a multiple of its 24 rows; an 8:16 group rounds k to 16.
// SIZES-LABEL: func.func @granules
// SIZES:         tdsl.linear %x, %w {tile = array<i64: 8, 48, 96>}
// SIZES:         tdsl.linear %y, %v {tile = array<i64: 8, 32, 64>}
func.func @granules(%x: !tdsl.tensor<[M, 96], f32>, %w: !tdsl.tensor<[48, 96], f32, #sparse.hybrid<[24, 48], [#layout.dense]>>, %y: !tdsl.tensor<[M, 64], f32>, %v: !tdsl.tensor<[32, 64], f32, #sparse.nm<8, 16>>) -> (!tdsl.tensor<[M, 48], f32>, !tdsl.tensor<[M, 32], f32>) {
  %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, 96], f32>, !tdsl.tensor<[48, 96], f32, #sparse.hybrid<[24, 48], [#layout.dense]>> -> !tdsl.tensor<[M, 48], f32>
  %1 = tdsl.linear %y, %v : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[32, 64], f32, #sparse.nm<8, 16>> -> !tdsl.tensor<[M, 32], f32>
  func.return %0, %1 : !tdsl.tensor<[M, 48], f32>, !tdsl.tensor<[M, 32], f32>
}
