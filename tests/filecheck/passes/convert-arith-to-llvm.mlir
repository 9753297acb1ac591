// RUN: stoicc opt %s -p convert-arith-to-llvm | filecheck %s

// Integer ops map one to one, keeping their overflow flags; min/max have no op
// in xDSL's llvm dialect and become intrinsic calls.

// CHECK-LABEL: func.func @integer(%a: i32, %b: i32) -> i32
// CHECK-NEXT:    %0 = llvm.add %a, %b overflow<nsw> : i32
// CHECK-NEXT:    %1 = llvm.sub %0, %b : i32
// CHECK-NEXT:    %2 = llvm.mul %1, %b overflow<nsw,nuw> : i32
// CHECK-NEXT:    %3 = llvm.sdiv %2, %b : i32
// CHECK-NEXT:    %4 = llvm.udiv %3, %b : i32
// CHECK-NEXT:    %5 = llvm.srem %4, %b : i32
// CHECK-NEXT:    %6 = llvm.urem %5, %b : i32
// CHECK-NEXT:    %7 = llvm.and %6, %b : i32
// CHECK-NEXT:    %8 = llvm.or %7, %b : i32
// CHECK-NEXT:    %9 = llvm.xor %8, %b : i32
// CHECK-NEXT:    %10 = llvm.shl %9, %b : i32
// CHECK-NEXT:    %11 = llvm.ashr %10, %b : i32
// CHECK-NEXT:    %12 = llvm.lshr %11, %b : i32
// CHECK-NEXT:    %13 = llvm.call_intrinsic "llvm.smin.i32"(%12, %b) : (i32, i32) -> i32
// CHECK-NEXT:    %14 = llvm.call_intrinsic "llvm.smax.i32"(%13, %b) : (i32, i32) -> i32
// CHECK-NEXT:    %15 = llvm.call_intrinsic "llvm.umin.i32"(%14, %b) : (i32, i32) -> i32
// CHECK-NEXT:    %16 = llvm.call_intrinsic "llvm.umax.i32"(%15, %b) : (i32, i32) -> i32
// CHECK-NEXT:    func.return %16 : i32
func.func @integer(%a: i32, %b: i32) -> i32 {
  %0 = arith.addi %a, %b overflow<nsw> : i32
  %1 = arith.subi %0, %b : i32
  %2 = arith.muli %1, %b overflow<nsw, nuw> : i32
  %3 = arith.divsi %2, %b : i32
  %4 = arith.divui %3, %b : i32
  %5 = arith.remsi %4, %b : i32
  %6 = arith.remui %5, %b : i32
  %7 = arith.andi %6, %b : i32
  %8 = arith.ori %7, %b : i32
  %9 = arith.xori %8, %b : i32
  %10 = arith.shli %9, %b : i32
  %11 = arith.shrsi %10, %b : i32
  %12 = arith.shrui %11, %b : i32
  %13 = arith.minsi %12, %b : i32
  %14 = arith.maxsi %13, %b : i32
  %15 = arith.minui %14, %b : i32
  %16 = arith.maxui %15, %b : i32
  func.return %16 : i32
}

// Float ops keep their fast-math flags, except on intrinsic calls, where xDSL's
// llvmlite translator rejects them.

// CHECK-LABEL: func.func @float(%x: f32, %y: f32) -> f32
// CHECK-NEXT:    %0 = llvm.fadd %x, %y {fastmathFlags = #llvm.fastmath<fast>} : f32
// CHECK-NEXT:    %1 = llvm.fsub %0, %y : f32
// CHECK-NEXT:    %2 = llvm.fmul %1, %y {fastmathFlags = #llvm.fastmath<contract>} : f32
// CHECK-NEXT:    %3 = llvm.fdiv %2, %y : f32
// CHECK-NEXT:    %4 = llvm.fneg %3 {fastmathFlags = #llvm.fastmath<nnan>} : f32
// CHECK-NEXT:    %5 = llvm.call_intrinsic "llvm.maximum.f32"(%4, %y) : (f32, f32) -> f32
// CHECK-NEXT:    %6 = llvm.call_intrinsic "llvm.maxnum.f32"(%5, %y) : (f32, f32) -> f32
// CHECK-NEXT:    %7 = llvm.call_intrinsic "llvm.minimum.f32"(%6, %y) : (f32, f32) -> f32
// CHECK-NEXT:    %8 = llvm.call_intrinsic "llvm.minnum.f32"(%7, %y) : (f32, f32) -> f32
// CHECK-NEXT:    func.return %8 : f32
func.func @float(%x: f32, %y: f32) -> f32 {
  %0 = arith.addf %x, %y fastmath<fast> : f32
  %1 = arith.subf %0, %y : f32
  %2 = arith.mulf %1, %y fastmath<contract> : f32
  %3 = arith.divf %2, %y : f32
  %4 = arith.negf %3 fastmath<nnan> : f32
  %5 = arith.maximumf %4, %y fastmath<fast> : f32
  %6 = arith.maxnumf %5, %y : f32
  %7 = arith.minimumf %6, %y : f32
  %8 = arith.minnumf %7, %y : f32
  func.return %8 : f32
}

// CHECK-LABEL: func.func @compare(%a: i32, %b: i32, %x: f64, %y: f64) -> (i32, f64, i1)
// CHECK-NEXT:    %0 = llvm.icmp "ult" %a, %b : i32
// CHECK-NEXT:    %1 = llvm.select %0, %a, %b : i1, i32
// CHECK-NEXT:    %2 = llvm.fcmp "olt" %x, %y : f64
// CHECK-NEXT:    %3 = llvm.select %2, %x, %y : i1, f64
// CHECK-NEXT:    %4 = llvm.mlir.constant(true) : i1
// CHECK-NEXT:    %5 = llvm.fcmp "uno" %x, %y : f64
// CHECK-NEXT:    %6 = llvm.and %4, %5 : i1
// CHECK-NEXT:    func.return %1, %3, %6 : i32, f64, i1
func.func @compare(%a: i32, %b: i32, %x: f64, %y: f64) -> (i32, f64, i1) {
  %0 = arith.cmpi ult, %a, %b : i32
  %1 = arith.select %0, %a, %b : i32
  %2 = arith.cmpf olt, %x, %y : f64
  %3 = arith.select %2, %x, %y : f64
  // The translator has no fcmp true/false: they fold to constants.
  %4 = arith.cmpf true, %x, %y : f64
  %5 = arith.cmpf uno, %x, %y : f64
  %6 = arith.andi %4, %5 : i1
  func.return %1, %3, %6 : i32, f64, i1
}

// CHECK-LABEL: func.func @casts(%a: i32, %x: f32, %h: i16) -> (f64, f16, f32, i32, i64, i64, i8, i32)
// CHECK-NEXT:    %0 = llvm.fpext %x : f32 to f64
// CHECK-NEXT:    %1 = llvm.fptrunc %x : f32 to f16
// CHECK-NEXT:    %2 = llvm.sitofp %a : i32 to f32
// CHECK-NEXT:    %3 = llvm.bitcast %x : f32 to i32
// CHECK-NEXT:    %4 = llvm.sext %a : i32 to i64
// CHECK-NEXT:    %5 = llvm.zext %h : i16 to i64
// CHECK-NEXT:    %6 = llvm.trunc %a : i32 to i8
// CHECK-NEXT:    %7 = llvm.call_intrinsic "llvm.fptosi.sat.i32.f32"(%x) : (f32) -> i32
// CHECK-NEXT:    func.return %0, %1, %2, %3, %4, %5, %6, %7
func.func @casts(%a: i32, %x: f32, %h: i16) -> (f64, f16, f32, i32, i64, i64, i8, i32) {
  %0 = arith.extf %x : f32 to f64
  %1 = arith.truncf %x : f32 to f16
  %2 = arith.sitofp %a : i32 to f32
  %3 = arith.bitcast %x : f32 to i32
  %4 = arith.extsi %a : i32 to i64
  %5 = arith.extui %h : i16 to i64
  %6 = arith.trunci %a : i32 to i8
  %7 = arith.fptosi %x : f32 to i32
  func.return %0, %1, %2, %3, %4, %5, %6, %7 : f64, f16, f32, i32, i64, i64, i8, i32
}

// uitofp has no translator support: narrow integers go through a zext to i64, an
// i64 with the top bit set is halved (keeping a sticky bit), converted and doubled.

// CHECK-LABEL: func.func @uitofp(%a: i32, %u: i64) -> (f32, f64)
// CHECK-NEXT:    %0 = llvm.zext %a : i32 to i64
// CHECK-NEXT:    %1 = llvm.sitofp %0 : i64 to f32
// CHECK-NEXT:    %2 = llvm.mlir.constant(0) : i64
// CHECK-NEXT:    %3 = llvm.mlir.constant(1) : i64
// CHECK-NEXT:    %4 = llvm.icmp "slt" %u, %2 : i64
// CHECK-NEXT:    %5 = llvm.lshr %u, %3 : i64
// CHECK-NEXT:    %6 = llvm.and %u, %3 : i64
// CHECK-NEXT:    %7 = llvm.or %5, %6 : i64
// CHECK-NEXT:    %8 = llvm.sitofp %7 : i64 to f64
// CHECK-NEXT:    %9 = llvm.fadd %8, %8 : f64
// CHECK-NEXT:    %10 = llvm.sitofp %u : i64 to f64
// CHECK-NEXT:    %11 = llvm.select %4, %9, %10 : i1, f64
// CHECK-NEXT:    func.return %1, %11 : f32, f64
func.func @uitofp(%a: i32, %u: i64) -> (f32, f64) {
  %0 = arith.uitofp %a : i32 to f32
  %1 = arith.uitofp %u : i64 to f64
  func.return %0, %1 : f32, f64
}

// index becomes i64 everywhere: signatures, block arguments, constants, and
// index_cast turns into a sign extension, a truncation or nothing.

// CHECK-LABEL: func.func @index(%n: i64, %a: i32, %v: vector<4xi64>) -> (i64, i16)
// CHECK-NEXT:    %c0 = llvm.mlir.constant(0) : i64
// CHECK-NEXT:    %step = llvm.sext %a : i32 to i64
// CHECK-NEXT:    cf.br ^loop(%c0 : i64)
// CHECK-NEXT:  ^loop(%i: i64):
// CHECK-NEXT:    %next = llvm.add %i, %step : i64
// CHECK-NEXT:    %done = llvm.icmp "sge" %next, %n : i64
// CHECK-NEXT:    cf.cond_br %done, ^exit, ^loop(%next : i64)
// CHECK-NEXT:  ^exit:
// CHECK-NEXT:    %narrow = llvm.trunc %next : i64 to i16
// CHECK-NEXT:    func.return %next, %narrow : i64, i16
func.func @index(%n: index, %a: i32, %v: vector<4xindex>) -> (i64, i16) {
  %c0 = arith.constant 0 : index
  %step = arith.index_cast %a : i32 to index
  cf.br ^loop(%c0 : index)
^loop(%i: index):
  %next = arith.addi %i, %step : index
  %done = arith.cmpi sge, %next, %n : index
  cf.cond_br %done, ^exit, ^loop(%next : index)
^exit:
  %wide = arith.index_cast %next : index to i64
  %narrow = arith.index_cast %next : index to i16
  func.return %wide, %narrow : i64, i16
}

// CHECK-LABEL: func.func @vector(%v: vector<8xf32>, %w: vector<8xi32>) -> (vector<8xf32>, vector<8xi32>)
// CHECK-NEXT:    %c = llvm.mlir.constant(dense<1.000000e+00> : vector<8xf32>) : vector<8xf32>
// CHECK-NEXT:    %0 = llvm.fadd %v, %c {fastmathFlags = #llvm.fastmath<fast>} : vector<8xf32>
// CHECK-NEXT:    %1 = llvm.call_intrinsic "llvm.maximum.v8f32"(%0, %v) : (vector<8xf32>, vector<8xf32>) -> vector<8xf32>
// CHECK-NEXT:    %2 = llvm.call_intrinsic "llvm.smax.v8i32"(%w, %w) : (vector<8xi32>, vector<8xi32>) -> vector<8xi32>
// CHECK-NEXT:    func.return %1, %2 : vector<8xf32>, vector<8xi32>
func.func @vector(%v: vector<8xf32>, %w: vector<8xi32>) -> (vector<8xf32>, vector<8xi32>) {
  %c = arith.constant dense<1.0> : vector<8xf32>
  %0 = arith.addf %v, %c fastmath<fast> : vector<8xf32>
  %1 = arith.maximumf %0, %v : vector<8xf32>
  %2 = arith.maxsi %w, %w : vector<8xi32>
  func.return %1, %2 : vector<8xf32>, vector<8xi32>
}
