// RUN: stoicc opt %s -p mark-parallel-loops | filecheck %s

// A quantized GEMV's column tile [j0, min(j0 + 8, n)): blocks of two columns j, j + 1 up to
// the end of the tile's whole four-column steps (the one-row edge's blocks end there too),
// e - (e - j0) % 4. Two divides four, so the last block starts at that end minus two and
// its column j + 1 stays in the tile: marked.
// CHECK-LABEL: func.func @two_columns_to_a_four_column_end
// CHECK:         } {stoicc.parallel}

// With a static N the tile's end is min(j0 + 48, 96): the outer loop's bounds and step are
// multiples of two, so every tile holds whole two-column blocks: marked.
// CHECK-LABEL: func.func @two_columns_static_tiles
// CHECK:         } {stoicc.parallel}

// The GEMV blocks' prefetches of weight rows ahead (tdsl-vectorize-integer): an address
// (a buffer's pointer plus an offset) and a cache hint at it touch no element, so the
// tiles stay marked, even where the address lies in another tile.
// CHECK-LABEL: func.func @two_columns_prefetching
// CHECK:         } {stoicc.parallel}

// Blocks of two up to a three-column end (or in tiles of 95 columns): a last block may
// start one column before the end, and its j + 1 reach the next tile: serial.
// CHECK-LABEL: func.func @two_columns_to_a_three_column_end
// CHECK-NOT:     stoicc.parallel
// CHECK-LABEL: func.func @two_columns_odd_static_tiles
// CHECK-NOT:     stoicc.parallel

// Tile rows of 32 (hybrid's one-row nest): iteration tr writes out[tr * 32 + c] for c in
// [0, h), h = min(tr * 32 + 32, n) - tr * 32, in blocks of four up to h's whole steps, then
// one by one. The loop ends at ceil(n / 32), so tr * 32 < n and h lies in [1, 32]: each
// iteration writes its own 32 columns: marked. With the loop ending at n instead, tr * 32
// may pass n and h wrap; with c up to 32 inclusive, the last write reaches the next tile
// row: both serial.
// CHECK-LABEL: func.func @tile_rows
// CHECK:         } {stoicc.parallel}
// CHECK-LABEL: func.func @tile_rows_past_n
// CHECK-NOT:     stoicc.parallel
// CHECK-LABEL: func.func @tile_rows_one_too_far
// CHECK-NOT:     stoicc.parallel

// Whole tiles (QuantStream over a [K, N] weight): the tile loop ends where its whole
// steps of 64 do, e = n - n % 64, so every tile is [j0, j0 + 64). Blocks of 16 columns
// from j0 to j0 + 64 stay in it, and so do stores at j0 + 48 .. j0 + 63: marked. A store at
// j0 + 64, or a tile loop to n (the last tile may be short), is serial.
// CHECK-LABEL: func.func @whole_tiles
// CHECK:         } {stoicc.parallel}
// CHECK-LABEL: func.func @whole_tiles_one_past
// CHECK-NOT:     stoicc.parallel
// CHECK-LABEL: func.func @whole_tiles_to_n
// CHECK-NOT:     stoicc.parallel

// A tile whose width is a value (StreamKernel's n-tiles, n / 2 columns in whole vectors):
// [j0, min(j0 + t, n)) in vectors of 16 up to the tile's whole vectors, then one by one to
// its end: marked. Stores up to min(j0 + t + 1, n) reach the next tile: serial.
// CHECK-LABEL: func.func @symbolic_tiles
// CHECK:         } {stoicc.parallel}
// CHECK-LABEL: func.func @symbolic_tiles_one_past
// CHECK-NOT:     stoicc.parallel

func.func @two_columns_to_a_four_column_end(%out: memref<1x?xf32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %f = arith.constant 1.0 : f32
  scf.for %j0 = %c0 to %n step %c8 {
    %e0 = arith.addi %j0, %c8 : index
    %e = arith.minui %e0, %n : index
    %span = arith.subi %e, %j0 : index
    %rest = arith.remui %span, %c4 : index
    %whole = arith.subi %e, %rest : index
    scf.for %j = %j0 to %whole step %c2 {
      %j1 = arith.addi %j, %c1 : index
      memref.store %f, %out[%c0, %j] : memref<1x?xf32>
      memref.store %f, %out[%c0, %j1] : memref<1x?xf32>
    }
  }
  func.return
}

func.func @two_columns_static_tiles(%out: memref<1x96xf32>) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c48 = arith.constant 48 : index
  %c96 = arith.constant 96 : index
  %f = arith.constant 1.0 : f32
  scf.for %j0 = %c0 to %c96 step %c48 {
    %e0 = arith.addi %j0, %c48 : index
    %e = arith.minui %e0, %c96 : index
    scf.for %j = %j0 to %e step %c2 {
      %j1 = arith.addi %j, %c1 : index
      memref.store %f, %out[%c0, %j] : memref<1x96xf32>
      memref.store %f, %out[%c0, %j1] : memref<1x96xf32>
    }
  }
  func.return
}

func.func @two_columns_prefetching(%out: memref<1x96xf32>, %w: memref<96x64xi8>) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c16 = arith.constant 16 : index
  %c48 = arith.constant 48 : index
  %c64 = arith.constant 64 : index
  %c96 = arith.constant 96 : index
  %read = arith.constant 0 : i32
  %l2 = arith.constant 1 : i32
  %f = arith.constant 1.0 : f32
  scf.for %j0 = %c0 to %c96 step %c48 {
    %e0 = arith.addi %j0, %c48 : index
    %e = arith.minui %e0, %c96 : index
    scf.for %j = %j0 to %e step %c2 {
      %ahead = arith.addi %j, %c16 : index
      %at = arith.muli %ahead, %c64 : index
      %base = ptr_xdsl.to_ptr %w : memref<96x64xi8> -> !ptr_xdsl.ptr
      %p = ptr_xdsl.ptradd %base, %at : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
      llvm.call_intrinsic "llvm.prefetch.p0"(%p, %read, %l2, %l2) : (!ptr_xdsl.ptr, i32, i32, i32) -> ()
      %j1 = arith.addi %j, %c1 : index
      memref.store %f, %out[%c0, %j] : memref<1x96xf32>
      memref.store %f, %out[%c0, %j1] : memref<1x96xf32>
    }
  }
  func.return
}

func.func @two_columns_to_a_three_column_end(%out: memref<1x?xf32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c8 = arith.constant 8 : index
  %f = arith.constant 1.0 : f32
  scf.for %j0 = %c0 to %n step %c8 {
    %e0 = arith.addi %j0, %c8 : index
    %e = arith.minui %e0, %n : index
    %span = arith.subi %e, %j0 : index
    %rest = arith.remui %span, %c3 : index
    %whole = arith.subi %e, %rest : index
    scf.for %j = %j0 to %whole step %c2 {
      %j1 = arith.addi %j, %c1 : index
      memref.store %f, %out[%c0, %j] : memref<1x?xf32>
      memref.store %f, %out[%c0, %j1] : memref<1x?xf32>
    }
  }
  func.return
}

func.func @two_columns_odd_static_tiles(%out: memref<1x96xf32>) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c48 = arith.constant 48 : index
  %c95 = arith.constant 95 : index
  %f = arith.constant 1.0 : f32
  scf.for %j0 = %c0 to %c95 step %c48 {
    %e0 = arith.addi %j0, %c48 : index
    %e = arith.minui %e0, %c95 : index
    scf.for %j = %j0 to %e step %c2 {
      %j1 = arith.addi %j, %c1 : index
      memref.store %f, %out[%c0, %j] : memref<1x96xf32>
      memref.store %f, %out[%c0, %j1] : memref<1x96xf32>
    }
  }
  func.return
}

func.func @tile_rows(%out: memref<1x?xf32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %c31 = arith.constant 31 : index
  %c32 = arith.constant 32 : index
  %f = arith.constant 1.0 : f32
  %n31 = arith.addi %n, %c31 : index
  %rows = arith.divui %n31, %c32 : index
  scf.for %tr = %c0 to %rows step %c1 {
    %first = arith.muli %tr, %c32 : index
    %e0 = arith.addi %first, %c32 : index
    %e = arith.minui %e0, %n : index
    %h = arith.subi %e, %first : index
    %span = arith.subi %h, %c0 : index
    %rest = arith.remui %span, %c4 : index
    %whole = arith.subi %h, %rest : index
    scf.for %c = %c0 to %whole step %c4 {
      %at = arith.addi %first, %c : index
      %at3 = arith.addi %at, %c3 : index
      memref.store %f, %out[%c0, %at] : memref<1x?xf32>
      memref.store %f, %out[%c0, %at3] : memref<1x?xf32>
    }
    scf.for %c = %whole to %h step %c1 {
      %at = arith.addi %c, %first : index
      memref.store %f, %out[%c0, %at] : memref<1x?xf32>
    }
  }
  func.return
}

func.func @tile_rows_past_n(%out: memref<1x?xf32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %c31 = arith.constant 31 : index
  %c32 = arith.constant 32 : index
  %f = arith.constant 1.0 : f32
  %rows = arith.addi %n, %c0 : index
  scf.for %tr = %c0 to %rows step %c1 {
    %first = arith.muli %tr, %c32 : index
    %e0 = arith.addi %first, %c32 : index
    %e = arith.minui %e0, %n : index
    %h = arith.subi %e, %first : index
    %span = arith.subi %h, %c0 : index
    %rest = arith.remui %span, %c4 : index
    %whole = arith.subi %h, %rest : index
    scf.for %c = %c0 to %whole step %c4 {
      %at = arith.addi %first, %c : index
      %at3 = arith.addi %at, %c3 : index
      memref.store %f, %out[%c0, %at] : memref<1x?xf32>
      memref.store %f, %out[%c0, %at3] : memref<1x?xf32>
    }
    scf.for %c = %whole to %h step %c1 {
      %at = arith.addi %c, %first : index
      memref.store %f, %out[%c0, %at] : memref<1x?xf32>
    }
  }
  func.return
}

func.func @tile_rows_one_too_far(%out: memref<1x?xf32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %c31 = arith.constant 31 : index
  %c32 = arith.constant 32 : index
  %f = arith.constant 1.0 : f32
  %n31 = arith.addi %n, %c31 : index
  %rows = arith.divui %n31, %c32 : index
  scf.for %tr = %c0 to %rows step %c1 {
    %first = arith.muli %tr, %c32 : index
    %e0 = arith.addi %first, %c32 : index
    %e = arith.minui %e0, %n : index
    %h = arith.subi %e, %first : index
    %span = arith.subi %h, %c0 : index
    %rest = arith.remui %span, %c4 : index
    %whole = arith.subi %h, %rest : index
    %h1 = arith.addi %h, %c1 : index
    scf.for %c = %c0 to %whole step %c4 {
      %at = arith.addi %first, %c : index
      %at3 = arith.addi %at, %c3 : index
      memref.store %f, %out[%c0, %at] : memref<1x?xf32>
      memref.store %f, %out[%c0, %at3] : memref<1x?xf32>
    }
    scf.for %c = %whole to %h1 step %c1 {
      %at = arith.addi %c, %first : index
      memref.store %f, %out[%c0, %at] : memref<1x?xf32>
    }
  }
  func.return
}

func.func @whole_tiles(%out: memref<1x?xf32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c16 = arith.constant 16 : index
  %c48 = arith.constant 48 : index
  %c64 = arith.constant 64 : index
  %v = arith.constant dense<1.0> : vector<16xf32>
  %sub = arith.subi %n, %c0 : index
  %rest = arith.remui %sub, %c64 : index
  %e = arith.subi %n, %rest : index
  scf.for %j0 = %c0 to %e step %c64 {
    %end = arith.addi %j0, %c64 : index
    scf.for %j = %j0 to %end step %c16 {
      vector.store %v, %out[%c0, %j] : memref<1x?xf32>, vector<16xf32>
    }
    %last = arith.addi %j0, %c48 : index
    vector.store %v, %out[%c0, %last] : memref<1x?xf32>, vector<16xf32>
  }
  func.return
}

func.func @whole_tiles_one_past(%out: memref<1x?xf32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c16 = arith.constant 16 : index
  %c49 = arith.constant 49 : index
  %c64 = arith.constant 64 : index
  %v = arith.constant dense<1.0> : vector<16xf32>
  %sub = arith.subi %n, %c0 : index
  %rest = arith.remui %sub, %c64 : index
  %e = arith.subi %n, %rest : index
  scf.for %j0 = %c0 to %e step %c64 {
    %end = arith.addi %j0, %c64 : index
    scf.for %j = %j0 to %end step %c16 {
      vector.store %v, %out[%c0, %j] : memref<1x?xf32>, vector<16xf32>
    }
    %last = arith.addi %j0, %c49 : index
    vector.store %v, %out[%c0, %last] : memref<1x?xf32>, vector<16xf32>
  }
  func.return
}

func.func @whole_tiles_to_n(%out: memref<1x?xf32>, %n: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c16 = arith.constant 16 : index
  %c48 = arith.constant 48 : index
  %c64 = arith.constant 64 : index
  %v = arith.constant dense<1.0> : vector<16xf32>
  %sub = arith.subi %n, %c0 : index
  %rest = arith.remui %sub, %c64 : index
  %e = arith.subi %n, %rest : index
  scf.for %j0 = %c0 to %n step %c64 {
    %end = arith.addi %j0, %c64 : index
    scf.for %j = %j0 to %end step %c16 {
      vector.store %v, %out[%c0, %j] : memref<1x?xf32>, vector<16xf32>
    }
    %last = arith.addi %j0, %c48 : index
    vector.store %v, %out[%c0, %last] : memref<1x?xf32>, vector<16xf32>
  }
  func.return
}

func.func @symbolic_tiles(%out: memref<1x?xf32>, %n: index, %t: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %v = arith.constant dense<1.0> : vector<16xf32>
  %f = arith.constant 1.0 : f32
  scf.for %j0 = %c0 to %n step %t {
    %e0 = arith.addi %j0, %t : index
    %e = arith.minui %e0, %n : index
    %span = arith.subi %e, %j0 : index
    %rest = arith.remui %span, %c16 : index
    %whole = arith.subi %e, %rest : index
    scf.for %j = %j0 to %whole step %c16 {
      vector.store %v, %out[%c0, %j] : memref<1x?xf32>, vector<16xf32>
    }
    scf.for %j = %whole to %e step %c1 {
      memref.store %f, %out[%c0, %j] : memref<1x?xf32>
    }
  }
  func.return
}

func.func @symbolic_tiles_one_past(%out: memref<1x?xf32>, %n: index, %t: index) attributes {stoicc.noalias_args} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %f = arith.constant 1.0 : f32
  scf.for %j0 = %c0 to %n step %t {
    %e0 = arith.addi %j0, %t : index
    %e1 = arith.addi %e0, %c1 : index
    %e = arith.minui %e1, %n : index
    scf.for %j = %j0 to %e step %c1 {
      memref.store %f, %out[%c0, %j] : memref<1x?xf32>
    }
  }
  func.return
}
