// RUN: stoicc opt %s -p 'tdsl-vectorize-integer{width=8 vnni=false madd=true rows=2 cols=2 row_cols=4 panel_rows=2 panel_cols=2},canonicalize,cse' | filecheck %s
// AVX2 without VNNI (madd=true): int7 activations (-63..63) times int8 weight codes.
// The weight's offset bytes (w + 128, 0..255) times int7 codes pair-sum exactly in
// pmaddubsw's i16 (|2 * 255 * 64| < 2^15: pair_bound), so the 8-bit codes step in
// 4-byte lanes (MADD), as codes of at most 7 bits do, where int8 activations' would
// saturate and step in i16 pairs (@w8a8 below). With 4-byte lanes, calls of 16 rows or
// more run PanelKernel: the rows' offsets 128 * sum_k x by pmaddubsw against ones, w's rows
// flipped (xor -128) and transposed into the panel of dwords, then each step loads the
// panel's vectors, broadcasts a dword of x per row and gathers pmaddubsw(panel, x) then
// pmaddwd by ones into each accumulator.
// CHECK-LABEL: func.func @w8a7
// CHECK:         %row_offsets = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x1xi32>
// CHECK:         %[[WORDS:.*]] = arith.constant dense<1> : vector<16xi16>
// CHECK:         llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"
// CHECK:         memref.store %{{.*}}, %row_offsets
// CHECK:         %[[FLIP:.*]] = arith.constant dense<-128> : vector<32xi8>
// CHECK:         scf.for %j0 =
// CHECK-NEXT:      %panel = memref.alloc() {alignment = 64 : i64} : memref<16x64xi32>
// CHECK:           vector.load %w_values[%{{.*}}, %k_1] : memref<9x64xi8>, vector<32xi8>
// CHECK-NEXT:      arith.xori %{{.*}}, %[[FLIP]] : vector<32xi8>
// CHECK:           vector.store %{{.*}}, %panel[%{{.*}}, %{{.*}}] : memref<16x64xi32>, vector<8xi32>
// CHECK:           scf.for %q = {{.*}} -> (vector<8xi32>, vector<8xi32>, vector<8xi32>, vector<8xi32>) {
// CHECK-NEXT:        %[[P:.*]] = vector.load %panel[%q, %{{.*}}] : memref<16x64xi32>, vector<8xi32>
// CHECK-NEXT:        vector.load %panel
// CHECK-NEXT:        %[[K:.*]] = arith.muli %q, %{{.*}} : index
// CHECK-NEXT:        vector.load %q_values[%i_1, %[[K]]] : memref<?x64xi8>, vector<4xi8>
// CHECK-NEXT:        vector.bitcast %{{.*}} : vector<4xi8> to vector<1xi32>
// CHECK-NEXT:        vector.extract
// CHECK-NEXT:        %[[X0:.*]] = vector.broadcast %{{.*}} : i32 to vector<8xi32>
// CHECK:             %[[PB:.*]] = vector.bitcast %[[P]] : vector<8xi32> to vector<32xi8>
// CHECK-NEXT:        %[[XB:.*]] = vector.bitcast %[[X0]] : vector<8xi32> to vector<32xi8>
// CHECK-NEXT:        %[[PAIRS:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"(%[[PB]], %[[XB]]) : (vector<32xi8>, vector<32xi8>) -> vector<16xi16>
// CHECK-NEXT:        llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[PAIRS]], %[[WORDS]]) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// CHECK-COUNT-3:     llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"
// CHECK:             scf.yield
// CHECK:         memref.dealloc %panel : memref<16x64xi32>

// int8 activations: the same weight's codes step as signed i16 pairs (pmaddwd, no
// offset, no panel).
// CHECK-LABEL: func.func @w8a8
// CHECK-NOT:     %panel
// CHECK-NOT:     pmadd.ub.sw
// CHECK:         llvm.sext %{{.*}} : vector<16xi8> to vector<16xi16>
// CHECK:         llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"
// CHECK-NOT:     %panel
// CHECK-NOT:     pmadd.ub.sw
// CHECK:         func.return

!X = !layout.packed<[?, 64], #quant.uniform<int7, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<?x64xi8>, "values">, #layout.buffer<"scales", memref<?xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<64>, symmetric = #builtin.int<1>}>>
!W = !layout.packed<[9, 64], #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<9x64xi8>, "values">, #layout.buffer<"scales", memref<9xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<64>, symmetric = #builtin.int<1>}>>
func.func @w8a7(%q_values: memref<?x64xi8>, %q_scales: memref<?xf32>, %w_values: memref<9x64xi8>, %w_scales: memref<9xf32>, %y: memref<?x9xf32>) {
  %q = layout.assemble %q_values, %q_scales : memref<?x64xi8>, memref<?xf32> -> !X
  %w = layout.assemble %w_values, %w_scales : memref<9x64xi8>, memref<9xf32> -> !W
  tdsl.linear %q, %w into %y {tile = array<i64: 16, 48, 1024>} : !X, !W into memref<?x9xf32>
  func.return
}
!X8 = !layout.packed<[?, 64], #quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<?x64xi8>, "values">, #layout.buffer<"scales", memref<?xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<64>, symmetric = #builtin.int<1>}>>
func.func @w8a8(%q_values: memref<?x64xi8>, %q_scales: memref<?xf32>, %w_values: memref<9x64xi8>, %w_scales: memref<9xf32>, %y: memref<?x9xf32>) {
  %q = layout.assemble %q_values, %q_scales : memref<?x64xi8>, memref<?xf32> -> !X8
  %w = layout.assemble %w_values, %w_scales : memref<9x64xi8>, memref<9xf32> -> !W
  tdsl.linear %q, %w into %y {tile = array<i64: 16, 48, 1024>} : !X8, !W into memref<?x9xf32>
  func.return
}
