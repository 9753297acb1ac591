// RUN: stoicc opt %s -p 'tdsl-vectorize-integer{vnni=true rows=2 cols=2 row_cols=4 panel=false},canonicalize,cse' | filecheck %s
// RUN: stoicc opt %s -p 'tdsl-vectorize-integer{vnni=false width=16 rows=2 cols=2 row_cols=4},canonicalize,cse' | filecheck %s --check-prefix=PORTABLE
// RUN: stoicc opt %s -p 'tdsl-vectorize-integer{madd=true width=8 rows=2 cols=2 row_cols=4},canonicalize,cse' | filecheck %s --check-prefix=MADD
// Integer products become register-blocked vector kernels stepping 4-byte dot
// products per i32 lane: vpdpbusd (unsigned weight bytes x signed activation
// bytes) with VNNI, pmaddubsw/pmaddwd with madd (x86 without VNNI), else widening
// multiply-adds.

// i8 x i8 -> i32. The weight is read as w + 128 (a flip of the sign bit), so each
// output subtracts 128 * sum_k x[i, k], computed once per row of x by the same
// dot steps against ones. n-tiles of 4 weight rows (whole 2-column blocks); a 2x2
// block of <16 x i32> accumulators over 64-byte steps; k = 100 is ragged, so a
// scalar tail finishes each block. A block's accumulators are summed into one
// vector of its columns by a transposing tree of shuffles and adds (each level
// folds every accumulator's lanes in half, two accumulators to a vector), and
// stored as one vector per row. Whole blocks of 2 rows, then the rows left in
// 1 x 4 blocks (row_cols), ragged columns in 1-column blocks; bias + relu run
// per n-tile.
// CHECK-LABEL: func.func @integer
// CHECK:         %[[ONES:.*]] = vector.bitcast %{{.*}} : vector<64xi8> to vector<16xi32>
// CHECK:         scf.for %i = {{.*}} {
// CHECK:           scf.for %k = {{.*}} -> (vector<16xi32>) {
// CHECK-NEXT:        %[[XR:.*]] = vector.load %x[%i, %k] : memref<?x100xi8>, vector<64xi8>
// CHECK-NEXT:        %[[XV:.*]] = vector.bitcast %[[XR]] : vector<64xi8> to vector<16xi32>
// CHECK-NEXT:        llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%{{.*}}, %[[ONES]], %[[XV]])
// CHECK:           vector.reduction <add>, %{{.*}} : vector<16xi32> into i32
// CHECK:           arith.muli %{{.*}}, %{{.*}} : i32
// CHECK:           memref.store %{{.*}}, %row_offsets[%i, %[[G0:.*]]] : memref<?x1xi32>
// CHECK:         %[[FLIP:.*]] = arith.constant dense<-128> : vector<64xi8>
// CHECK:         scf.for %j0 = %{{.*}} to %{{.*}} step %[[FOUR:.*]] {
// CHECK:           scf.for %i_1 = %{{.*}} to %{{.*}} step %[[TWO:.*]] {
// CHECK:             scf.for %j = %j0 to %{{.*}} step %[[TWO]] {
// CHECK:               %[[A0:.*]], %[[A1:.*]], %[[A2:.*]], %[[A3:.*]] = scf.for %k_1 = {{.*}} -> (vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>) {
// CHECK-NEXT:            %[[X0R:.*]] = vector.load %x[%i_1, %k_1] : memref<?x100xi8>, vector<64xi8>
// CHECK-NEXT:            %[[X1R:.*]] = vector.load %x[%{{.*}}, %k_1] : memref<?x100xi8>, vector<64xi8>
// CHECK-NEXT:            %[[X0:.*]] = vector.bitcast %[[X0R]]
// CHECK-NEXT:            %[[X1:.*]] = vector.bitcast %[[X1R]]
// CHECK-NEXT:            %[[W0R:.*]] = vector.load %w[%j, %k_1] : memref<6x100xi8>, vector<64xi8>
// CHECK-NEXT:            %[[W0F:.*]] = arith.xori %[[W0R]], %[[FLIP]] : vector<64xi8>
// CHECK-NEXT:            %[[W0:.*]] = vector.bitcast %[[W0F]] : vector<64xi8> to vector<16xi32>
// CHECK-NEXT:            vector.load %w[%{{.*}}, %k_1]
// CHECK-NEXT:            arith.xori
// CHECK-NEXT:            vector.bitcast
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%{{.*}}, %[[W0]], %[[X0]])
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%{{.*}}, %[[W0]], %[[X1]])
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// CHECK-NEXT:            llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// CHECK-NEXT:            scf.yield
// CHECK:               %[[OFF0:.*]] = memref.load %row_offsets[%i_1, %[[G0]]] : memref<?x1xi32>
// CHECK-NEXT:          %[[OFFS0:.*]] = vector.broadcast %[[OFF0]] : i32 to vector<2xi32>
// CHECK:               %[[LO:.*]] = vector.shuffle %[[A0]], %[[A1]] [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23] : vector<16xi32>, vector<16xi32>
// CHECK-NEXT:          %[[HI:.*]] = vector.shuffle %[[A0]], %[[A1]] [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31] : vector<16xi32>, vector<16xi32>
// CHECK-NEXT:          arith.addi %[[LO]], %[[HI]] : vector<16xi32>
// CHECK-NEXT:          vector.shuffle %{{.*}} [0, 1, 2, 3, 8, 9, 10, 11]
// CHECK-NEXT:          vector.shuffle %{{.*}} [4, 5, 6, 7, 12, 13, 14, 15]
// CHECK-NEXT:          arith.addi %{{.*}} : vector<8xi32>
// CHECK:               %[[SUMS0:.*]] = arith.addi %{{.*}} : vector<2xi32>
// CHECK-NEXT:          %[[DOTS0:.*]] = arith.subi %[[SUMS0]], %[[OFFS0]] : vector<2xi32>
// CHECK:               scf.for %k_2 = {{.*}} -> (i32, i32, i32, i32) {
// CHECK:                 arith.extsi
// CHECK:                 arith.muli
// CHECK:               %[[TAIL0:.*]] = llvm.insertelement
// CHECK-NEXT:          %[[OUT0:.*]] = arith.addi %[[DOTS0]], %[[TAIL0]] : vector<2xi32>
// CHECK:               vector.store %[[OUT0]], %out[%i_1, %j] : memref<?x6xi32>, vector<2xi32>
// CHECK:             scf.for %j_1 =
// CHECK:               scf.for %k_3 = {{.*}} -> (vector<16xi32>, vector<16xi32>) {
// CHECK:               vector.store %{{.*}}, %out[%i_1, %j_1] : memref<?x6xi32>, vector<1xi32>
// CHECK:           scf.for %i_2 =
// CHECK:             scf.for %j_2 = %{{.*}} step %[[FOUR]] {
// CHECK:               scf.for %k_5 = {{.*}} -> (vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>) {
// CHECK:               vector.store %{{.*}}, %out[%i_2, %j_2] : memref<?x6xi32>, vector<4xi32>
// CHECK:             scf.for %j_3 =
// CHECK:           memref.load %b
// CHECK:           arith.maxsi
// CHECK:         memref.dealloc %row_offsets : memref<?x1xi32>

// Without VNNI the same operands are widened to i32 lanes, 16 bytes per step
// (LLVM multiplies them with vpmaddwd); the correction is the same.
// PORTABLE-LABEL: func.func @integer
// PORTABLE-NOT:     llvm.call_intrinsic
// PORTABLE:         scf.for %k_1 = {{.*}} -> (vector<16xi32>, vector<16xi32>, vector<16xi32>, vector<16xi32>) {
// PORTABLE-NEXT:      %[[X0R:.*]] = vector.load %x[%i_1, %k_1] : memref<?x100xi8>, vector<16xi8>
// PORTABLE-NEXT:      vector.load %x[%{{.*}}, %k_1] : memref<?x100xi8>, vector<16xi8>
// PORTABLE-NEXT:      %[[X0:.*]] = llvm.sext %[[X0R]] : vector<16xi8> to vector<16xi32>
// PORTABLE:           %[[W0R:.*]] = vector.load %w[%j, %k_1] : memref<6x100xi8>, vector<16xi8>
// PORTABLE-NEXT:      %[[W0F:.*]] = arith.xori %[[W0R]], %{{.*}} : vector<16xi8>
// PORTABLE-NEXT:      %[[W0:.*]] = llvm.zext %[[W0F]] : vector<16xi8> to vector<16xi32>
// PORTABLE:           %[[P:.*]] = arith.muli %[[W0]], %[[X0]] : vector<16xi32>
// PORTABLE-NEXT:      arith.addi %{{.*}}, %[[P]] : vector<16xi32>
// With madd (AVX2: 8 lanes), 8-bit codes step in i16 pairs, signed: 16 bytes of x and
// of w, both sign-extended, to a pmaddwd, 2 products to a lane; no offset, no row sums.
// MADD-LABEL: func.func @integer
// MADD-NOT:     row_offsets
// MADD:         scf.for %k = {{.*}} -> (vector<8xi32>, vector<8xi32>, vector<8xi32>, vector<8xi32>) {
// MADD-NEXT:      %[[X0R:.*]] = vector.load %x[%i, %k] : memref<?x100xi8>, vector<16xi8>
// MADD-NEXT:      vector.load %x[%{{.*}}, %k] : memref<?x100xi8>, vector<16xi8>
// MADD-NEXT:      %[[X0:.*]] = llvm.sext %[[X0R]] : vector<16xi8> to vector<16xi16>
// MADD:           %[[W0R:.*]] = vector.load %w[%j, %k] : memref<6x100xi8>, vector<16xi8>
// MADD-NEXT:      %[[W0:.*]] = llvm.sext %[[W0R]] : vector<16xi8> to vector<16xi16>
// MADD:           %[[P:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[W0]], %[[X0]]) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// MADD-NEXT:      arith.addi %{{.*}}, %[[P]] : vector<8xi32>
func.func @integer(%x: memref<?x100xi8>, %w: memref<6x100xi8>, %b: memref<6xi32>, %out: memref<?x6xi32>, %M: index) {
  tdsl.linear %x, %w bias %b into %out {act = "relu", tile = array<i64: 16, 4, 1024>} : memref<?x100xi8>, memref<6x100xi8> bias memref<6xi32> into memref<?x6xi32>
  func.return
}

!X = !layout.packed<[?, 64], #quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<?x64xi8>, "values">, #layout.buffer<"scales", memref<?xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<64>, symmetric = #builtin.int<1>}>>
!W = !layout.packed<[4, 64], #quant.uniform<int4, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<4x32xi8>, "values">, #layout.buffer<"scales", memref<4xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<64>, symmetric = #builtin.int<1>}>>
!C = !layout.packed<[2, 64], #quant.uniform<int8, per = channel, axis = 1, group = 0, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<2x64xi8>, "values">, #layout.buffer<"scales", memref<64xf32>, "scales">], {bits = #builtin.int<8>, group = #builtin.int<1>, symmetric = #builtin.int<1>}>>
!G = !layout.packed<[2, 64], #quant.uniform<int4, per = group, axis = 0, group = 32, symmetric = 1, scale = f32>, #layout.storage<[#layout.buffer<"values", memref<2x32xi8>, "values">, #layout.buffer<"scales", memref<2x2xf32>, "scales">], {bits = #builtin.int<4>, group = #builtin.int<32>, symmetric = #builtin.int<1>}>>

// W4A8: the activations' per-token quantization is vectorised too, bit for bit
// the scalar arithmetic: the row's largest |x| as the largest bit pattern of
// x & 0x7fffffff, then x / scale rounded and clamped, and converted by adding
// 1.5 * 2^23 (0x4B400000), whose low byte is then the code. The int4 weight goes
// two rows at a time: their bytes side by side, each nibble read as code + 8 (xor
// 0x88), the low nibbles (even k) masked in place and the high ones (odd k) shifted
// down, with no widening; the activations' step is permuted to match, once for
// every pair ([even k, even k], [odd k, odd k]), so one accumulator holds both rows,
// each in half its lanes. The correction is 8 * sum_k x[i, k]. Outputs are x scale *
// (0 + w scale * dot), the scalar path's sum over (here one) scale groups, in the
// lanes of a vector of the block's columns (w scales gathered by insertelement).
// Shown: the 1 x 4 block of the row left over after the 2-row blocks, whose steps
// prefetch each of its rows' bytes 8 rows ahead (below, @grouped).
// CHECK-LABEL: func.func @w4a8
// CHECK:         scf.for %r =
// CHECK:           scf.for %k = {{.*}} -> (vector<16xi32>) {
// CHECK-NEXT:        %[[XF:.*]] = vector.load %x[%r, %k] : memref<?x64xf32>, vector<16xf32>
// CHECK-NEXT:        %[[XB:.*]] = vector.bitcast %[[XF]] : vector<16xf32> to vector<16xi32>
// CHECK-NEXT:        %[[ABS:.*]] = arith.andi %[[XB]], %{{.*}} : vector<16xi32>
// CHECK-NEXT:        arith.maxui %{{.*}}, %[[ABS]] : vector<16xi32>
// CHECK-COUNT-16:  vector.extract
// CHECK:           %[[SCALE:.*]] = arith.divf %{{.*}}, %{{.*}} : f32
// CHECK:           scf.for %k_1 =
// CHECK-NEXT:        vector.load %x[%r, %k_1] : memref<?x64xf32>, vector<16xf32>
// CHECK-NEXT:        arith.divf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-NEXT:        math.roundeven
// CHECK-NEXT:        arith.maximumf
// CHECK-NEXT:        arith.minimumf
// CHECK-NEXT:        arith.addf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-NEXT:        vector.bitcast %{{.*}} : vector<16xf32> to vector<16xi32>
// CHECK-NEXT:        %[[CODES:.*]] = llvm.trunc %{{.*}} : vector<16xi32> to vector<16xi8>
// CHECK-NEXT:        vector.store %[[CODES]], %q_values[%r, %k_1] : memref<?x64xi8>, vector<16xi8>
// CHECK:           memref.store %[[SCALE]], %q_scales[%r] : memref<?xf32>
// CHECK:         %[[EIGHT:.*]] = arith.constant 8 : i32
// CHECK:         arith.muli %{{.*}}, %[[EIGHT]] : i32
// CHECK:         %[[NIBBLE_FLIP:.*]] = arith.constant dense<-120> : vector<64xi8>
// CHECK:         %[[LOW4:.*]] = arith.constant dense<15> : vector<64xi8>
// CHECK:         %[[SHIFT4:.*]] = arith.constant dense<4> : vector<64xi8>
// CHECK:         scf.for %i_2 =
// CHECK:           scf.for %j_2 =
// CHECK:             %[[SW0:.*]] = memref.load %w_scales[%j_2] : memref<4xf32>
// CHECK-NEXT:        %[[SW1:.*]] = memref.load %w_scales[%{{.*}}] : memref<4xf32>
// CHECK-NEXT:        %[[SW2:.*]] = memref.load %w_scales[%{{.*}}] : memref<4xf32>
// CHECK-NEXT:        %[[SW3:.*]] = memref.load %w_scales[%{{.*}}] : memref<4xf32>
// CHECK-NEXT:        vector.broadcast %[[SW0]] : f32 to vector<4xf32>
// CHECK-NEXT:        llvm.insertelement %[[SW1]]
// CHECK-NEXT:        llvm.insertelement %[[SW2]]
// CHECK-NEXT:        %[[SW:.*]] = llvm.insertelement %[[SW3]]
// CHECK-NEXT:        arith.addi %j_2, %{{.*}} : index
// CHECK-NEXT:        %[[AT:.*]] = arith.divui
// CHECK-COUNT-4:     llvm.call_intrinsic "llvm.prefetch.p0"
// CHECK-NEXT:        %[[XQ:.*]] = vector.load %q_values[%i_2, %{{.*}}] : memref<?x64xi8>, vector<64xi8>
// CHECK-NEXT:        %[[XE:.*]] = vector.shuffle %[[XQ]], %[[XQ]] [0, 2, 4, {{.*}}, 60, 62, 0, 2, {{.*}}, 62] : vector<64xi8>, vector<64xi8>
// CHECK-NEXT:        %[[XO:.*]] = vector.shuffle %[[XQ]], %[[XQ]] [1, 3, 5, {{.*}}, 61, 63, 1, 3, {{.*}}, 63] : vector<64xi8>, vector<64xi8>
// CHECK-NEXT:        %[[XEV:.*]] = vector.bitcast %[[XE]] : vector<64xi8> to vector<16xi32>
// CHECK-NEXT:        %[[XOV:.*]] = vector.bitcast %[[XO]] : vector<64xi8> to vector<16xi32>
// CHECK-NEXT:        %[[R0:.*]] = vector.load %w_values[%j_2, %[[AT]]] : memref<4x32xi8>, vector<32xi8>
// CHECK-NEXT:        %[[R1:.*]] = vector.load %w_values[%{{.*}}, %[[AT]]] : memref<4x32xi8>, vector<32xi8>
// CHECK-NEXT:        %[[PAIR:.*]] = vector.shuffle %[[R0]], %[[R1]] [0, 1, 2, {{.*}}, 62, 63] : vector<32xi8>, vector<32xi8>
// CHECK-NEXT:        %[[U:.*]] = arith.xori %[[PAIR]], %[[NIBBLE_FLIP]] : vector<64xi8>
// CHECK-NEXT:        %[[EVEN:.*]] = arith.andi %[[U]], %[[LOW4]] : vector<64xi8>
// CHECK-NEXT:        %[[UP:.*]] = arith.shrui %[[U]], %[[SHIFT4]] : vector<64xi8>
// CHECK-NEXT:        %[[ODD:.*]] = arith.andi %[[UP]], %[[LOW4]] : vector<64xi8>
// CHECK-NEXT:        %[[EV:.*]] = vector.bitcast %[[EVEN]] : vector<64xi8> to vector<16xi32>
// CHECK-NEXT:        %[[OV:.*]] = vector.bitcast %[[ODD]] : vector<64xi8> to vector<16xi32>
// CHECK-COUNT-2:     vector.load %w_values
// CHECK:             %[[E01:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%{{.*}}, %[[EV]], %[[XEV]])
// CHECK-NEXT:        %[[A01:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%[[E01]], %[[OV]], %[[XOV]])
// CHECK-NEXT:        llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// CHECK-NEXT:        %[[A23:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// CHECK:             vector.shuffle %[[A01]], %[[A23]] [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27] : vector<16xi32>, vector<16xi32>
// CHECK:             %[[DOTS:.*]] = arith.subi %{{.*}}, %{{.*}} : vector<4xi32>
// CHECK-NEXT:        %[[F:.*]] = llvm.sitofp %[[DOTS]] : vector<4xi32> to vector<4xf32>
// CHECK-NEXT:        %[[T:.*]] = arith.mulf %[[SW]], %[[F]] : vector<4xf32>
// CHECK-NEXT:        %[[ACC:.*]] = arith.addf %{{.*}}, %[[T]] : vector<4xf32>
// CHECK-NEXT:        %[[SX:.*]] = memref.load %q_scales[%i_2] : memref<?xf32>
// CHECK-NEXT:        %[[SXV:.*]] = vector.broadcast %[[SX]] : f32 to vector<4xf32>
// CHECK-NEXT:        %[[Y:.*]] = arith.mulf %[[SXV]], %[[ACC]] : vector<4xf32>
// CHECK-NEXT:        vector.store %[[Y]], %out[%i_2, %j_2] : memref<?x4xf32>, vector<4xf32>
// With madd, int4 codes (below 128 as offset bytes) step as with vpdpbusd, 32 bytes and
// 4 products to a lane: pmaddubsw's i16 pair sums, then pmaddwd by ones.
// MADD-LABEL: func.func @w4a8
// MADD:         %[[ONES:.*]] = arith.constant dense<1> : vector<16xi16>
// MADD:         %[[PAIRS:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"(%{{.*}}, %{{.*}}) : (vector<32xi8>, vector<32xi8>) -> vector<16xi16>
// MADD-NEXT:    %[[SUMS:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[PAIRS]], %[[ONES]]) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// MADD-NEXT:    arith.addi %{{.*}}, %[[SUMS]] : vector<8xi32>
func.func @w4a8(%x: memref<?x64xf32>, %w_values: memref<4x32xi8>, %w_scales: memref<4xf32>, %out: memref<?x4xf32>, %M: index) {
  %w = layout.assemble %w_values, %w_scales : memref<4x32xi8>, memref<4xf32> -> !W
  %q_values = memref.alloc(%M) {alignment = 64 : i64} : memref<?x64xi8>
  %q_scales = memref.alloc(%M) {alignment = 64 : i64} : memref<?xf32>
  %q = layout.assemble %q_values, %q_scales : memref<?x64xi8>, memref<?xf32> -> !X
  tdsl.quantize %x into %q {layout = #quant.uniform<int8, per = token>} : memref<?x64xf32> into !X
  tdsl.linear %q, %w into %out {tile = array<i64: 16, 48, 1024>} : !X, !W into memref<?x4xf32>
  memref.dealloc %q_values : memref<?x64xi8>
  memref.dealloc %q_scales : memref<?xf32>
  func.return
}

// Weights with a scale per group of k get an exact integer dot product per group,
// scaled and summed in f32 in group order (as tdsl-lower-to-loops does): group
// sums of x per row (steps as wide as a group allows: 32 bytes for 32 codes), and
// blocks whose 64-code steps span both groups of 32: each accumulator holds both
// groups of its two (int4) rows in quarters, one transposing tree reduces them
// into lanes c*2+h (column c, group h), the two groups' x sums are subtracted as a
// pair repeated per column, the columns' scales are loaded two at a time (one
// 64-bit word per column, bitcast back), each product sw * dot is formed in its
// lane, and each group's products are gathered (a shuffle) and added in order.
// CHECK-LABEL: func.func @grouped
// CHECK:         %row_offsets = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x2xi32>
// CHECK:         scf.for %g = {{.*}} {
// CHECK:           llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"
// CHECK:           memref.store %{{.*}}, %row_offsets[%i, %g] : memref<?x2xi32>
// CHECK:         scf.for %j = {{.*}} {
// CHECK:           %[[S0:.*]] = vector.load %g_scales[%j, %{{.*}}] : memref<2x2xf32>, vector<2xf32>
// CHECK-NEXT:      vector.bitcast %[[S0]] : vector<2xf32> to vector<1xi64>
// CHECK:           %[[SW:.*]] = vector.bitcast %{{.*}} : vector<2xi64> to vector<4xf32>
// CHECK:           vector.load %g_values[%j, %{{.*}}] : memref<2x32xi8>, vector<32xi8>
// CHECK:           %[[E0:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// CHECK-NEXT:      %[[A0:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%[[E0]], %{{.*}}, %{{.*}})
// CHECK:           %[[OFF:.*]] = vector.load %row_offsets[%i_1, %{{.*}}] : memref<?x2xi32>, vector<2xi32>
// CHECK:           %[[OFFS:.*]] = vector.shuffle %[[OFF]], %[[OFF]] [0, 1, 0, 1] : vector<2xi32>, vector<2xi32>
// CHECK:           vector.shuffle %[[A0]], %[[A0]] [0, 1, 4, 5, 8, 9, 12, 13] : vector<16xi32>, vector<16xi32>
// CHECK:           %[[SUMS:.*]] = arith.addi %{{.*}} : vector<4xi32>
// CHECK-NEXT:      %[[DOTS:.*]] = arith.subi %[[SUMS]], %[[OFFS]] : vector<4xi32>
// CHECK:           %[[F:.*]] = llvm.sitofp %[[DOTS]] : vector<4xi32> to vector<4xf32>
// CHECK-NEXT:      %[[T:.*]] = arith.mulf %[[SW]], %[[F]] : vector<4xf32>
// CHECK:           %[[T0:.*]] = vector.shuffle %[[T]], %[[T]] [0, 2] : vector<4xf32>, vector<4xf32>
// CHECK-NEXT:      %[[ACC0:.*]] = arith.addf %{{.*}}, %[[T0]] : vector<2xf32>
// CHECK-NEXT:      %[[T1:.*]] = vector.shuffle %[[T]], %[[T]] [1, 3] : vector<4xf32>, vector<4xf32>
// CHECK-NEXT:      %[[ACC:.*]] = arith.addf %[[ACC0]], %[[T1]] : vector<2xf32>
// CHECK:           %[[SX:.*]] = memref.load %q_scales[%i_1] : memref<?xf32>
// CHECK-NEXT:      %[[SXV:.*]] = vector.broadcast %[[SX]] : f32 to vector<2xf32>
// CHECK-NEXT:      %[[Y:.*]] = arith.mulf %[[SXV]], %[[ACC]] : vector<2xf32>
// CHECK-NEXT:      vector.store %[[Y]], %yg[%i_1, %j] : memref<?x2xf32>, vector<2xf32>
// The rows left (a GEMV's one) in 1 x 4 blocks: each step also prefetches, into L2
// (locality 1), each of the block's rows' bytes two blocks (8 rows) ahead, which
// the hardware's stream prefetchers do not find for short rows.
// CHECK:         %[[AHEAD:.*]] = arith.constant 8 : index
// CHECK:         scf.for %i_2 =
// CHECK:           scf.for %j_2 =
// CHECK:             %[[ROW:.*]] = arith.addi %j_2, %[[AHEAD]] : index
// CHECK:             arith.muli %[[ROW]], %{{.*}} : index
// CHECK:             %[[BASE:.*]] = ptr_xdsl.to_ptr %g_values : memref<2x32xi8> -> !ptr_xdsl.ptr
// CHECK-NEXT:        %[[P:.*]] = ptr_xdsl.ptradd %[[BASE]], %{{.*}} : (!ptr_xdsl.ptr, index) -> !ptr_xdsl.ptr
// CHECK-NEXT:        llvm.call_intrinsic "llvm.prefetch.p0"(%[[P]], %{{.*}}, %[[ONE:.*]], %[[ONE]]) : (!ptr_xdsl.ptr, i32, i32, i32) -> ()
// CHECK-COUNT-3:     llvm.call_intrinsic "llvm.prefetch.p0"
// CHECK:             llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
func.func @grouped(%q_values: memref<?x64xi8>, %q_scales: memref<?xf32>, %g_values: memref<2x32xi8>, %g_scales: memref<2x2xf32>, %yg: memref<?x2xf32>) {
  %q = layout.assemble %q_values, %q_scales : memref<?x64xi8>, memref<?xf32> -> !X
  %g = layout.assemble %g_values, %g_scales : memref<2x32xi8>, memref<2x2xf32> -> !G
  tdsl.linear %q, %g into %yg {tile = array<i64: 16, 48, 1024>} : !X, !G into memref<?x2xf32>
  func.return
}

// Left to tdsl-lower-to-loops: f32 products (tdsl-microkernel's), and weights
// whose scales vary along k within a row's every element (per column).
// CHECK-LABEL: func.func @others
// CHECK:         tdsl.linear %x, %w into %out
// CHECK:         tdsl.linear %q, %c into %yc
func.func @others(%x: memref<?x64xf32>, %w: memref<2x64xf32>, %out: memref<?x2xf32>, %q_values: memref<?x64xi8>, %q_scales: memref<?xf32>, %c_values: memref<2x64xi8>, %c_scales: memref<64xf32>, %yc: memref<?x2xf32>) {
  tdsl.linear %x, %w into %out {tile = array<i64: 16, 48, 1024>} : memref<?x64xf32>, memref<2x64xf32> into memref<?x2xf32>
  %q = layout.assemble %q_values, %q_scales : memref<?x64xi8>, memref<?xf32> -> !X
  %c = layout.assemble %c_values, %c_scales : memref<2x64xi8>, memref<64xf32> -> !C
  tdsl.linear %q, %c into %yc {tile = array<i64: 16, 48, 1024>} : !X, !C into memref<?x2xf32>
  func.return
}
