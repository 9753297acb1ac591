// RUN: stoicc opt %s -p convert-math-to-llvm | filecheck %s

// Intrinsics are called by their type-mangled names, so that f32, f64 and vector
// uses of the same function do not clash in xDSL's llvmlite translator.

// CHECK-LABEL: func.func @intrinsics(%x: f32, %y: f32) -> f32
// CHECK-NEXT:    %0 = llvm.call_intrinsic "llvm.exp.f32"(%x) : (f32) -> f32
// CHECK-NEXT:    %1 = llvm.call_intrinsic "llvm.exp2.f32"(%0) : (f32) -> f32
// CHECK-NEXT:    %2 = llvm.call_intrinsic "llvm.log.f32"(%1) : (f32) -> f32
// CHECK-NEXT:    %3 = llvm.call_intrinsic "llvm.log2.f32"(%2) : (f32) -> f32
// CHECK-NEXT:    %4 = llvm.call_intrinsic "llvm.log10.f32"(%3) : (f32) -> f32
// CHECK-NEXT:    %5 = llvm.call_intrinsic "llvm.sqrt.f32"(%4) : (f32) -> f32
// CHECK-NEXT:    %6 = llvm.call_intrinsic "llvm.fabs.f32"(%5) : (f32) -> f32
// CHECK-NEXT:    %7 = llvm.call_intrinsic "llvm.ceil.f32"(%6) : (f32) -> f32
// CHECK-NEXT:    %8 = llvm.call_intrinsic "llvm.floor.f32"(%7) : (f32) -> f32
// CHECK-NEXT:    %9 = llvm.call_intrinsic "llvm.round.f32"(%8) : (f32) -> f32
// CHECK-NEXT:    %10 = llvm.call_intrinsic "llvm.trunc.f32"(%9) : (f32) -> f32
// CHECK-NEXT:    %11 = llvm.call_intrinsic "llvm.sin.f32"(%10) : (f32) -> f32
// CHECK-NEXT:    %12 = llvm.call_intrinsic "llvm.cos.f32"(%11) : (f32) -> f32
// CHECK-NEXT:    %13 = llvm.call_intrinsic "llvm.pow.f32"(%12, %y) : (f32, f32) -> f32
// CHECK-NEXT:    %14 = llvm.call_intrinsic "llvm.copysign.f32"(%13, %y) : (f32, f32) -> f32
// CHECK-NEXT:    %15 = llvm.intr.fma(%14, %x, %y) : (f32, f32, f32) -> f32
// CHECK-NEXT:    func.return %15 : f32
func.func @intrinsics(%x: f32, %y: f32) -> f32 {
  %0 = math.exp %x fastmath<fast> : f32
  %1 = math.exp2 %0 : f32
  %2 = math.log %1 : f32
  %3 = math.log2 %2 : f32
  %4 = math.log10 %3 : f32
  %5 = math.sqrt %4 : f32
  %6 = math.absf %5 : f32
  %7 = math.ceil %6 : f32
  %8 = math.floor %7 : f32
  %9 = math.round %8 : f32
  %10 = math.trunc %9 : f32
  %11 = math.sin %10 : f32
  %12 = math.cos %11 : f32
  %13 = math.powf %12, %y : f32
  %14 = math.copysign %13, %y : f32
  // xDSL's translator mangles llvm.intr.fma itself, so the dedicated op is safe.
  %15 = math.fma %14, %x, %y fastmath<contract> : f32
  func.return %15 : f32
}

// CHECK-LABEL: func.func @mixed_types(%x: f64, %v: vector<8xf32>) -> (f64, vector<8xf32>)
// CHECK-NEXT:    %0 = llvm.call_intrinsic "llvm.exp.f64"(%x) : (f64) -> f64
// CHECK-NEXT:    %1 = llvm.call_intrinsic "llvm.exp.v8f32"(%v) : (vector<8xf32>) -> vector<8xf32>
// CHECK-NEXT:    %2 = llvm.intr.fma(%1, %1, %v) : (vector<8xf32>, vector<8xf32>, vector<8xf32>) -> vector<8xf32>
// CHECK-NEXT:    func.return %0, %2 : f64, vector<8xf32>
func.func @mixed_types(%x: f64, %v: vector<8xf32>) -> (f64, vector<8xf32>) {
  %0 = math.exp %x : f64
  %1 = math.exp %v : vector<8xf32>
  %2 = math.fma %1, %1, %v : vector<8xf32>
  func.return %0, %2 : f64, vector<8xf32>
}

// Functions without an LLVM intrinsic call libm, f32 through the "f" variant;
// each function is declared once per module.

// CHECK-LABEL: func.func @libm(%x: f32, %y: f64) -> (f32, f64)
// CHECK-NEXT:    %0 = llvm.call @tanhf(%x) {fastmathFlags = #llvm.fastmath<fast>} : (f32) -> f32
// CHECK-NEXT:    %1 = llvm.call @erff(%0) : (f32) -> f32
// CHECK-NEXT:    %2 = llvm.call @tanhf(%1) : (f32) -> f32
// CHECK-NEXT:    %3 = llvm.call @tanh(%y) : (f64) -> f64
// CHECK-NEXT:    %4 = llvm.call @atan2(%3, %y) : (f64, f64) -> f64
// CHECK-NEXT:    func.return %2, %4 : f32, f64
func.func @libm(%x: f32, %y: f64) -> (f32, f64) {
  %0 = math.tanh %x fastmath<fast> : f32
  %1 = math.erf %0 : f32
  %2 = math.tanh %1 : f32
  %3 = math.tanh %y : f64
  %4 = math.atan2 %3, %y : f64
  func.return %2, %4 : f32, f64
}

// CHECK:       llvm.func @tanhf(f32) -> f32
// CHECK-NEXT:  llvm.func @erff(f32) -> f32
// CHECK-NEXT:  llvm.func @tanh(f64) -> f64
// CHECK-NEXT:  llvm.func @atan2(f64, f64) -> f64
// CHECK-NEXT:  }
