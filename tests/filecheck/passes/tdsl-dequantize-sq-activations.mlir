// RUN: stoicc opt %s -p tdsl-dequantize-sq-activations | filecheck %s
// SQ-format activations times a dense weight, on the CPU: the product reads the
// activations' values (dequantized once per call), so the dense kernel runs it.

// CHECK-LABEL: func.func @f
// CHECK:         %0 = tdsl.quantize %x {layout = #quant.sq<
// CHECK-NEXT:    %1 = tdsl.dequantize %0 : !tdsl.tensor<[M, 128], f32, #quant.sq<{{.*}}>> -> !tdsl.tensor<[M, 128], f32>
// CHECK-NEXT:    %2 = tdsl.linear %1, %w : !tdsl.tensor<[M, 128], f32>, !tdsl.tensor<[64, 128], f32> -> !tdsl.tensor<[M, 64], f32>
// CHECK-NEXT:    func.return %2

func.func @f(%x: !tdsl.tensor<[M, 128], f32> {tdsl.name = "x"}, %w: !tdsl.tensor<[64, 128], f32> {tdsl.name = "w"}) -> !tdsl.tensor<[M, 64], f32> {
  %0 = tdsl.quantize %x {layout = #quant.sq<#quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>, #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #builtin.int<64>, #builtin.int<3>>} : !tdsl.tensor<[M, 128], f32> -> !tdsl.tensor<[M, 128], f32, #quant.sq<#quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>, #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #builtin.int<64>, #builtin.int<3>>>
  %1 = tdsl.linear %0, %w : !tdsl.tensor<[M, 128], f32, #quant.sq<#quant.uniform<int8, per = token, axis = 0, group = 0, symmetric = 1, scale = f32>, #quant.uniform<int8, per = channel, axis = 0, group = 0, symmetric = 1, scale = f32>, #builtin.int<64>, #builtin.int<3>>>, !tdsl.tensor<[64, 128], f32> -> !tdsl.tensor<[M, 64], f32>
  func.return %1 : !tdsl.tensor<[M, 64], f32>
}
