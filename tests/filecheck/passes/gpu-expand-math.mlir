// RUN: stoicc opt %s -p gpu-expand-math | filecheck %s
// RUN: not stoicc opt %S/Inputs/gpu-expand-math-log.mlir -p gpu-expand-math 2>&1 | filecheck %s --check-prefix=ERR

// gpu-expand-math: exp, tanh and erf as f32 arithmetic that NVPTX lowers (no libm on the
// device): exp the polynomial (Cody-Waite reduction, 2^n in the exponent bits), tanh and
// erf through it, the sign by copysign; sqrt stays (sqrt.rn); log has no expansion: an error.

// CHECK-LABEL: func.func @f
// CHECK-NOT:     math.exp
// CHECK-NOT:     math.tanh
// CHECK-NOT:     math.erf
// CHECK:         math.roundeven
// CHECK:         arith.bitcast %{{.*}} : f32 to i32
// CHECK:         math.copysign
// CHECK:         math.copysign
// CHECK:         math.sqrt
// ERR: gpu-expand-math: math.log on f32 has no GPU lowering

builtin.module {
  func.func @f(%x: f32) -> (f32, f32, f32, f32) {
    %e = math.exp %x : f32
    %t = math.tanh %x : f32
    %r = math.erf %x : f32
    %s = math.sqrt %x : f32
    func.return %e, %t, %r, %s : f32, f32, f32, f32
  }
}
