// RUN: stoicc opt %s -p tdsl-bitsplit-as-int8 | filecheck %s
// Bit-split activations that only meet products (the W8A8 product of the unsplit codes,
// bit for bit) or are read as values (fake_quantize(x, int8(per=token)) either way)
// quantize as int8 per token on the CPU: the integer kernels read them.

// CHECK-LABEL: func.func @product
// CHECK-NEXT:    %0 = tdsl.quantize %x {layout = #quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>}
// CHECK-NEXT:    %1 = tdsl.linear %0, %w : !tdsl.tensor<[M, 16], f32, #quant.uniform<int8, per = token
// CHECK-LABEL: func.func @values
// CHECK-NEXT:    %xs = tdsl.quantize %x {layout = #quant.uniform<int8, per = token
// CHECK:         tdsl.dequantize %xs : !tdsl.tensor<[M, 16], f32, #quant.uniform<int8, per = token
// A bit-split tensor that leaves the kernel as such keeps its layout.
// CHECK-LABEL: func.func @kept
// CHECK-NEXT:    tdsl.quantize %x {layout = #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>}

func.func @product(%x: !tdsl.tensor<[M, 16], f32> {tdsl.name = "x"}, %w: !tdsl.tensor<[4, 16], f32, #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>> {tdsl.name = "w"}) -> !tdsl.tensor<[M, 4], f32> {
  %0 = tdsl.quantize %x {layout = #quant.bitsplit<#builtin.int<4>, #builtin.int<1>>} : !tdsl.tensor<[M, 16], f32> -> !tdsl.tensor<[M, 16], f32, #quant.bitsplit<#builtin.int<4>, #builtin.int<1>>>
  %1 = tdsl.linear %0, %w : !tdsl.tensor<[M, 16], f32, #quant.bitsplit<#builtin.int<4>, #builtin.int<1>>>, !tdsl.tensor<[4, 16], f32, #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>> -> !tdsl.tensor<[M, 4], f32>
  func.return %1 : !tdsl.tensor<[M, 4], f32>
}
func.func @values(%x: !tdsl.tensor<[M, 16], f32> {tdsl.name = "x"}, %w: !tdsl.tensor<[4, 16], f32, #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>> {tdsl.name = "w"}) -> (!tdsl.tensor<[M, 4], f32>, !tdsl.tensor<[M, 16], f32>) {
  %xs = tdsl.quantize %x {layout = #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>} : !tdsl.tensor<[M, 16], f32> -> !tdsl.tensor<[M, 16], f32, #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>>
  %0 = tdsl.linear %xs, %w : !tdsl.tensor<[M, 16], f32, #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>>, !tdsl.tensor<[4, 16], f32, #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>> -> !tdsl.tensor<[M, 4], f32>
  %1 = tdsl.dequantize %xs : !tdsl.tensor<[M, 16], f32, #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>> -> !tdsl.tensor<[M, 16], f32>
  func.return %0, %1 : !tdsl.tensor<[M, 4], f32>, !tdsl.tensor<[M, 16], f32>
}
func.func @kept(%x: !tdsl.tensor<[M, 16], f32>) -> !tdsl.tensor<[M, 16], f32, #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>> {
  %xs = tdsl.quantize %x {layout = #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>} : !tdsl.tensor<[M, 16], f32> -> !tdsl.tensor<[M, 16], f32, #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>>
  func.return %xs : !tdsl.tensor<[M, 16], f32, #quant.bitsplit<#builtin.int<4>, #builtin.int<0>>>
}
