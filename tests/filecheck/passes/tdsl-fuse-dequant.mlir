// RUN: stoicc opt %s -p tdsl-fuse-dequant | filecheck %s
// A linear layer reads its quantized weight in place; with per-token int8
// activations it reads both operands quantized (the integer W8A8 path).

!W = !tdsl.tensor<[32, 64], f32, #quant.uniform<int4, per = group, axis = 1, group = 32>>
!X = !tdsl.tensor<[M, 64], f32, #quant.uniform<int8, per = token>>

// CHECK-LABEL: func.func @weight_only
// CHECK-NEXT:    %0 = tdsl.linear %x, %w : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[32, 64], f32, #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 1, scale = f32>> -> !tdsl.tensor<[M, 32], f32>
// CHECK-NEXT:    func.return %0
func.func @weight_only(%x: !tdsl.tensor<[M, 64], f32>, %w: !W) -> !tdsl.tensor<[M, 32], f32> {
  %d = tdsl.dequantize %w : !W -> !tdsl.tensor<[32, 64], f32>
  %0 = tdsl.linear %x, %d : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[32, 64], f32> -> !tdsl.tensor<[M, 32], f32>
  func.return %0 : !tdsl.tensor<[M, 32], f32>
}

// CHECK-LABEL: func.func @w4a8
// CHECK-NEXT:    %xq = tdsl.quantize %x
// CHECK-NEXT:    %0 = tdsl.linear %xq, %w : !tdsl.tensor<[M, 64], f32, #quant.uniform<int8, per = token
// CHECK-NOT:     tdsl.dequantize
func.func @w4a8(%x: !tdsl.tensor<[M, 64], f32>, %w: !W) -> !tdsl.tensor<[M, 32], f32> {
  %xq = tdsl.quantize %x {layout = #quant.uniform<int8, per = token>} : !tdsl.tensor<[M, 64], f32> -> !X
  %xd = tdsl.dequantize %xq : !X -> !tdsl.tensor<[M, 64], f32>
  %d = tdsl.dequantize %w : !W -> !tdsl.tensor<[32, 64], f32>
  %0 = tdsl.linear %xd, %d : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[32, 64], f32> -> !tdsl.tensor<[M, 32], f32>
  func.return %0 : !tdsl.tensor<[M, 32], f32>
}

// A dequantized weight that something else also reads is left materialised.
// CHECK-LABEL: func.func @shared
// CHECK:         %d = tdsl.dequantize %w
// CHECK:         tdsl.linear %x, %d
func.func @shared(%x: !tdsl.tensor<[M, 64], f32>, %w: !W) -> (!tdsl.tensor<[M, 32], f32>, !tdsl.tensor<[32, 64], f32>) {
  %d = tdsl.dequantize %w : !W -> !tdsl.tensor<[32, 64], f32>
  %0 = tdsl.linear %x, %d : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[32, 64], f32> -> !tdsl.tensor<[M, 32], f32>
  func.return %0, %d : !tdsl.tensor<[M, 32], f32>, !tdsl.tensor<[32, 64], f32>
}

// A float zero (Q4_1's grid) folds with int8 activations too: each group's integer product
// gains offset * the group's sum of x (tdsl-vectorize-integer); bit-split activations,
// which have no such product, stay dequantized.
!Q41 = !tdsl.tensor<[32, 64], f32, #quant.uniform<int4, per = group, axis = 1, group = 32, symmetric = 0, scale = f16, zero = float>>
!B = !tdsl.tensor<[M, 64], f32, #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>>

// CHECK-LABEL: func.func @w4a8_float_zero
// CHECK-NEXT:    %xq = tdsl.quantize %x
// CHECK-NEXT:    %0 = tdsl.linear %xq, %w : !tdsl.tensor<[M, 64], f32, #quant.uniform<int8, per = token{{.*}}, zero = float>> -> !tdsl.tensor<[M, 32], f32>
func.func @w4a8_float_zero(%x: !tdsl.tensor<[M, 64], f32>, %w: !Q41) -> !tdsl.tensor<[M, 32], f32> {
  %xq = tdsl.quantize %x {layout = #quant.uniform<int8, per = token>} : !tdsl.tensor<[M, 64], f32> -> !X
  %xd = tdsl.dequantize %xq : !X -> !tdsl.tensor<[M, 64], f32>
  %d = tdsl.dequantize %w : !Q41 -> !tdsl.tensor<[32, 64], f32>
  %0 = tdsl.linear %xd, %d : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[32, 64], f32> -> !tdsl.tensor<[M, 32], f32>
  func.return %0 : !tdsl.tensor<[M, 32], f32>
}

// CHECK-LABEL: func.func @bitsplit_float_zero
// CHECK:         %xd = tdsl.dequantize %xs
// CHECK-NEXT:    %0 = tdsl.linear %xd, %w : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[32, 64], f32, #quant.uniform<int4
func.func @bitsplit_float_zero(%x: !tdsl.tensor<[M, 64], f32>, %w: !Q41) -> !tdsl.tensor<[M, 32], f32> {
  %xs = tdsl.quantize %x {layout = #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>} : !tdsl.tensor<[M, 64], f32> -> !B
  %xd = tdsl.dequantize %xs : !B -> !tdsl.tensor<[M, 64], f32>
  %d = tdsl.dequantize %w : !Q41 -> !tdsl.tensor<[32, 64], f32>
  %0 = tdsl.linear %xd, %d : !tdsl.tensor<[M, 64], f32>, !tdsl.tensor<[32, 64], f32> -> !tdsl.tensor<[M, 32], f32>
  func.return %0 : !tdsl.tensor<[M, 32], f32>
}
