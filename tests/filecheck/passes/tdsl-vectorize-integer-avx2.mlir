// RUN: stoicc opt %s -p 'tdsl-vectorize-integer{width=8 vnni=false madd=true rows=2 cols=2 row_cols=4 panel=false},canonicalize,cse' | filecheck %s
// AVX2's steps (8 lanes, no VNNI: the pipeline's madd=true where has_byte_madd): 32
// bytes of codes against 32 of x by pmaddubsw into i16 pair sums, the blocks arranged
// for 128-bit halves (Dot.avx2). int4 codes of groups of 32 (Q4_0's grid): a group's
// pair sums add exactly in i16 (pair_bound: 32 / 32 steps * 2 parts * 2 * 15 * 128 < 2^15),
// so the steps accumulate i16 words, and one pmaddwd by ones per output vector and
// group turns them into i32, after the tree's first levels (in i16 where they stay exact).

// x's rows as the phased steps read them are built once per call (phase_x): each step of
// 32 bytes as its even bytes and its odd bytes (the low and high nibbles' k), each
// repeated for both halves, so that the blocks' steps load them (pmaddubsw's memory
// operand) with no shuffle of x.
// CHECK-LABEL: func.func @g32
// CHECK:         %row_offsets = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x4xi32>
// CHECK:         %[[ONES:.*]] = arith.constant dense<1> : vector<16xi16>
// CHECK:         memref.store %{{.*}}, %row_offsets[%i, %g] : memref<?x4xi32>
// CHECK:         %phase_x = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x256xi8>
// CHECK:         scf.for %i_1 =
// CHECK-NEXT:      scf.for %k_1 = %{{.*}} to %{{.*}} step %[[STEP:.*]] {
// CHECK-NEXT:        %[[AT:.*]] = arith.muli %k_1, %{{.*}} : index
// CHECK-NEXT:        %[[XS:.*]] = vector.load %q_values[%i_1, %k_1] : memref<?x128xi8>, vector<32xi8>
// CHECK-NEXT:        %[[EVEN:.*]] = vector.shuffle %[[XS]], %[[XS]] [0, 2, 4, {{.*}}, 28, 30, 0, 2, {{.*}}, 28, 30] : vector<32xi8>, vector<32xi8>
// CHECK-NEXT:        %[[ODD:.*]] = vector.shuffle %[[XS]], %[[XS]] [1, 3, 5, {{.*}}, 29, 31, 1, 3, {{.*}}, 29, 31] : vector<32xi8>, vector<32xi8>
// CHECK-NEXT:        vector.store %[[EVEN]], %phase_x[%i_1, %[[AT]]] : memref<?x256xi8>, vector<32xi8>
// CHECK-NEXT:        %[[AT1:.*]] = arith.addi %[[AT]], %[[STEP]] : index
// CHECK-NEXT:        vector.store %[[ODD]], %phase_x[%i_1, %[[AT1]]] : memref<?x256xi8>, vector<32xi8>
// CHECK-NEXT:      }
// CHECK-NEXT:    }
// The 2 x 2 blocks: per group, the two rows' steps read x's parts from phase_x and
// the two weight rows' 16 bytes side by side; each row's accumulator adds its two
// parts' pmaddubsw in i16 (no pmaddwd in the step); after the group's steps, one
// pmaddwd per row, whose lanes the tree sums within each 128-bit half.
// CHECK:         scf.for %i_2 =
// CHECK:           scf.for %j =
// CHECK:             scf.for %g_1 = {{.*}} -> (vector<2xf32>, vector<2xf32>) {
// CHECK:               %[[W0:.*]], %[[W1:.*]] = scf.for %k_2 = {{.*}} -> (vector<16xi16>, vector<16xi16>) {
// CHECK-COUNT-4:         vector.load %phase_x[{{.*}}] : memref<?x256xi8>, vector<32xi8>
// CHECK-NOT:             vector<32xi8>, vector<32xi8>
// CHECK:                 vector.load %g_values[%j, %[[K:.*]]] : memref<8x64xi8>, vector<16xi8>
// CHECK-NEXT:            vector.load %g_values[%{{.*}}, %[[K]]] : memref<8x64xi8>, vector<16xi8>
// CHECK-NOT:             pmadd.wd
// CHECK:                 %[[P0:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"(%{{.*}}, %{{.*}}) : (vector<32xi8>, vector<32xi8>) -> vector<16xi16>
// CHECK-NOT:             pmadd.wd
// CHECK:                 %[[P1:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"
// CHECK-NEXT:            %[[S01:.*]] = arith.addi %[[P0]], %[[P1]] : vector<16xi16>
// CHECK-NEXT:            arith.addi %{{.*}}, %[[S01]] : vector<16xi16>
// CHECK-COUNT-2:         llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"
// CHECK-NOT:             pmadd
// CHECK:                 scf.yield %{{.*}}, %{{.*}} : vector<16xi16>, vector<16xi16>
// CHECK-NOT:           pmadd.ub.sw
// CHECK:               %[[D0:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[W0]], %[[ONES]]) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// CHECK-NEXT:          vector.shuffle %[[D0]], %[[D0]] [0, 1, 4, 5] : vector<8xi32>, vector<8xi32>
// CHECK-NEXT:          vector.shuffle %[[D0]], %[[D0]] [2, 3, 6, 7] : vector<8xi32>, vector<8xi32>
// CHECK-NEXT:          arith.addi %{{.*}} : vector<4xi32>
// CHECK-NEXT:          vector.shuffle %{{.*}} [0, 2] : vector<4xi32>, vector<4xi32>
// CHECK-NEXT:          vector.shuffle %{{.*}} [1, 3] : vector<4xi32>, vector<4xi32>
// CHECK-NEXT:          arith.addi %{{.*}} : vector<2xi32>
// CHECK-NEXT:          arith.subi %{{.*}} : vector<2xi32>
// CHECK-NEXT:          llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[W1]], %[[ONES]])
// CHECK-NOT:           pmadd
// CHECK:               scf.yield %{{.*}}, %{{.*}} : vector<2xf32>, vector<2xf32>
// The rows left in 1 x 4 blocks (the GEMV's): first the block's columns' f16 group
// scales are transposed 4 groups at a time into scratch (scale_rows: 4 loads, two
// levels of interleaving shuffles), which each group then loads as one vector where
// it gathered a scale per column. A vector holds rows j and j + 2 (one to a 128-bit
// half, so that the tree stays in lane); each step prefetches one row ahead (the
// steps rotate over the rows: steps_to_line); the two accumulators' words are added
// in i16 by the tree's first level (in-lane masks), then one pmaddwd for the block.
// CHECK:         %scale_rows = memref.alloc() {alignment = 64 : i64} : memref<4x4xf16>
// CHECK:         scf.for %i_3 =
// CHECK:           scf.for %j_2 =
// CHECK:             %[[C0:.*]] = vector.load %g_scales[%j_2, %{{.*}}] : memref<8x4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[C1:.*]] = vector.load %g_scales[%{{.*}}, %{{.*}}] : memref<8x4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[C2:.*]] = vector.load %g_scales[%{{.*}}, %{{.*}}] : memref<8x4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[C3:.*]] = vector.load %g_scales[%{{.*}}, %{{.*}}] : memref<8x4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[L0:.*]] = vector.shuffle %[[C0]], %[[C2]] [0, 4, 1, 5] : vector<4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[L1:.*]] = vector.shuffle %[[C0]], %[[C2]] [2, 6, 3, 7] : vector<4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[L2:.*]] = vector.shuffle %[[C1]], %[[C3]] [0, 4, 1, 5] : vector<4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[L3:.*]] = vector.shuffle %[[C1]], %[[C3]] [2, 6, 3, 7] : vector<4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[T0:.*]] = vector.shuffle %[[L0]], %[[L2]] [0, 4, 1, 5] : vector<4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[T1:.*]] = vector.shuffle %[[L0]], %[[L2]] [2, 6, 3, 7] : vector<4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[T2:.*]] = vector.shuffle %[[L1]], %[[L3]] [0, 4, 1, 5] : vector<4xf16>, vector<4xf16>
// CHECK-NEXT:        %[[T3:.*]] = vector.shuffle %[[L1]], %[[L3]] [2, 6, 3, 7] : vector<4xf16>, vector<4xf16>
// CHECK-NEXT:        vector.store %[[T0]], %scale_rows[%[[G0:.*]], %[[G0]]] : memref<4x4xf16>, vector<4xf16>
// CHECK-NEXT:        vector.store %[[T1]], %scale_rows[%{{.*}}, %[[G0]]] : memref<4x4xf16>, vector<4xf16>
// CHECK-NEXT:        vector.store %[[T2]], %scale_rows[%{{.*}}, %[[G0]]] : memref<4x4xf16>, vector<4xf16>
// CHECK-NEXT:        vector.store %[[T3]], %scale_rows[%{{.*}}, %[[G0]]] : memref<4x4xf16>, vector<4xf16>
// CHECK-NEXT:        scf.for %g_3 = {{.*}} -> (vector<4xf32>) {
// CHECK-NEXT:          %[[SW:.*]] = vector.load %scale_rows[%g_3, %[[G0]]] : memref<4x4xf16>, vector<4xf16>
// CHECK-NEXT:          %[[SWF:.*]] = arith.extf %[[SW]] : vector<4xf16> to vector<4xf32>
// CHECK-NOT:           %g_scales
// CHECK:               %[[A0:.*]], %[[A1:.*]] = scf.for %k_4 = {{.*}} -> (vector<16xi16>, vector<16xi16>) {
// CHECK:                 llvm.call_intrinsic "llvm.prefetch.p0"
// CHECK-NOT:             llvm.prefetch
// CHECK-COUNT-2:         vector.load %phase_x[%i_3, %{{.*}}] : memref<?x256xi8>, vector<32xi8>
// CHECK-NEXT:            vector.bitcast
// CHECK-NEXT:            %[[R0:.*]] = vector.load %g_values[%j_2, %[[K:.*]]] : memref<8x64xi8>, vector<16xi8>
// CHECK-NEXT:            %[[R2:.*]] = vector.load %g_values[%{{.*}}, %[[K]]] : memref<8x64xi8>, vector<16xi8>
// CHECK-NEXT:            vector.shuffle %[[R0]], %[[R2]] [0, 1, 2, {{.*}}, 30, 31] : vector<16xi8>, vector<16xi8>
// CHECK-COUNT-4:         llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"
// CHECK-NOT:             pmadd
// CHECK:                 scf.yield %{{.*}}, %{{.*}} : vector<16xi16>, vector<16xi16>
// CHECK:               %[[OFF:.*]] = vector.broadcast %{{.*}} : i32 to vector<4xi32>
// CHECK-NEXT:          %[[M0:.*]] = vector.shuffle %[[A0]], %[[A1]] [0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27] : vector<16xi16>, vector<16xi16>
// CHECK-NEXT:          %[[M1:.*]] = vector.shuffle %[[A0]], %[[A1]] [4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31] : vector<16xi16>, vector<16xi16>
// CHECK-NEXT:          %[[M:.*]] = arith.addi %[[M0]], %[[M1]] : vector<16xi16>
// CHECK-NEXT:          %[[D:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[M]], %[[ONES]]) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// CHECK-NEXT:          %[[E0:.*]] = vector.shuffle %[[D]], %[[D]] [0, 2, 4, 6] : vector<8xi32>, vector<8xi32>
// CHECK-NEXT:          %[[E1:.*]] = vector.shuffle %[[D]], %[[D]] [1, 3, 5, 7] : vector<8xi32>, vector<8xi32>
// CHECK-NEXT:          %[[SUMS:.*]] = arith.addi %[[E0]], %[[E1]] : vector<4xi32>
// CHECK-NEXT:          %[[DOTS:.*]] = arith.subi %[[SUMS]], %[[OFF]] : vector<4xi32>
// CHECK-NEXT:          %[[F:.*]] = llvm.sitofp %[[DOTS]] : vector<4xi32> to vector<4xf32>
// CHECK-NEXT:          arith.mulf %[[SWF]], %[[F]] : vector<4xf32>
// CHECK-NOT:           pmadd
// CHECK:               scf.yield %{{.*}} : vector<4xf32>
// CHECK:         memref.dealloc %scale_rows : memref<4x4xf16>
// CHECK:         memref.dealloc %phase_x : memref<?x256xi8>
!X = !layout.packed<[?, 128], #quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<?x128xi8>, "values">, #layout.buffer<"scales", memref<?xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<128>, symmetric = #builtin.int<1>}>>
!G = !layout.packed<[8, 128], #quant.uniform<int4, per = group, axis = 0, group = 32, symmetric = 1, scale = f16>, #layout.storage<[#layout.buffer<"values", memref<8x64xi8>, "values">, #layout.buffer<"scales", memref<8x4xf16>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<1>}>>
func.func @g32(%q_values: memref<?x128xi8>, %q_scales: memref<?xf32>, %g_values: memref<8x64xi8>, %g_scales: memref<8x4xf16>, %y: memref<?x8xf32>) {
  %q = layout.assemble %q_values, %q_scales : memref<?x128xi8>, memref<?xf32> -> !X
  %g = layout.assemble %g_values, %g_scales : memref<8x64xi8>, memref<8x4xf16> -> !G
  tdsl.linear %q, %g into %y {tile = array<i64: 16, 48, 1024>} : !X, !G into memref<?x8xf32>
  func.return
}

// Ternary per channel at K = 768: steps of 64 codes, 16 bytes of each of two rows to a
// vector (phase_rows), x in 4 phase parts per step (phase_x); a row's pair sums add
// exactly in i16 for 10 steps but not for the 12 of its group (_word_chunk), so the
// steps run in runs of 10 (640 codes) accumulating i16 words, and each run's words
// are added into the i32 accumulators by one pmaddwd per accumulator.
// CHECK-LABEL: func.func @ternary
// CHECK:         %phase_x = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x1536xi8>
// CHECK:           vector.load %q_values[%i_1, %k_1] : memref<?x768xi8>, vector<64xi8>
// CHECK-COUNT-4:   vector.shuffle %{{.*}} : vector<64xi8>, vector<64xi8>
// CHECK-COUNT-4:   vector.store %{{.*}}, %phase_x[%i_1, %{{.*}}] : memref<?x1536xi8>, vector<32xi8>
// CHECK:         %[[RUNS:.*]] = arith.constant 640 : index
// CHECK:         scf.for %j =
// CHECK:           %[[A0:.*]], %[[A1:.*]] = scf.for %kc = %{{.*}} to %{{.*}} step %[[RUNS]] iter_args({{.*}}) -> (vector<8xi32>, vector<8xi32>) {
// CHECK:             %[[W0:.*]], %[[W1:.*]] = scf.for %k_2 = %kc to %{{.*}} -> (vector<16xi16>, vector<16xi16>) {
// CHECK-COUNT-8:       vector.load %phase_x
// CHECK:               vector.load %t_values[%j, %[[K:.*]]] : memref<4x192xi8>, vector<16xi8>
// CHECK-NEXT:          vector.load %t_values[%{{.*}}, %[[K]]] : memref<4x192xi8>, vector<16xi8>
// CHECK-COUNT-8:       llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"
// CHECK-NOT:           pmadd
// CHECK:               scf.yield %{{.*}}, %{{.*}} : vector<16xi16>, vector<16xi16>
// CHECK-NEXT:        }
// CHECK-NEXT:        %[[S0:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[W0]], %{{.*}}) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// CHECK-NEXT:        %[[T0:.*]] = arith.addi %{{.*}}, %[[S0]] : vector<8xi32>
// CHECK-NEXT:        %[[S1:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[W1]], %{{.*}}) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// CHECK-NEXT:        %[[T1:.*]] = arith.addi %{{.*}}, %[[S1]] : vector<8xi32>
// CHECK-NEXT:        scf.yield %[[T0]], %[[T1]] : vector<8xi32>, vector<8xi32>
// CHECK-NOT:       pmadd
// CHECK:           vector.shuffle %[[A0]], %[[A0]] [0, 1, 4, 5] : vector<8xi32>, vector<8xi32>
!XT = !layout.packed<[?, 768], #quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<?x768xi8>, "values">, #layout.buffer<"scales", memref<?xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<768>, symmetric = #builtin.int<1>}>>
!T = !layout.packed<[4, 768], #quant.uniform<ternary, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x192xi8>, "values">, #layout.buffer<"scales", memref<4xf32>, "scales">], {bits = #builtin.int<2>, group = #builtin.int<768>, symmetric = #builtin.int<1>}>>
func.func @ternary(%q_values: memref<?x768xi8>, %q_scales: memref<?xf32>, %t_values: memref<4x192xi8>, %t_scales: memref<4xf32>, %y: memref<?x4xf32>) {
  %q = layout.assemble %q_values, %q_scales : memref<?x768xi8>, memref<?xf32> -> !XT
  %t = layout.assemble %t_values, %t_scales : memref<4x192xi8>, memref<4xf32> -> !T
  tdsl.linear %q, %t into %y {tile = array<i64: 16, 48, 1024>} : !XT, !T into memref<?x4xf32>
  func.return
}
