// RUN: stoicc opt %s | stoicc opt | filecheck %s
// The structure ops (batched products, transpose permutations, reshape, slices,
// concat) and dim expressions (quoted: "P+T") print in a form that parses back.

// CHECK-LABEL: func.func @structure
func.func @structure(%q: !tdsl.tensor<[9, T, 64], f32>, %k: !tdsl.tensor<[3, P, 64], f32>, %kn: !tdsl.tensor<[3, T, 64], f32>, %w: !tdsl.tensor<[64, 8], f32>) -> !tdsl.tensor<[9, T, "P+T"], f32> {
  // CHECK: tdsl.concat %k, %kn {axis = 1 : i64} : !tdsl.tensor<[3, P, 64], f32>, !tdsl.tensor<[3, T, 64], f32> -> !tdsl.tensor<[3, "P+T", 64], f32>
  %kc = tdsl.concat %k, %kn {axis = 1 : i64} : !tdsl.tensor<[3, P, 64], f32>, !tdsl.tensor<[3, T, 64], f32> -> !tdsl.tensor<[3, "P+T", 64], f32>
  // CHECK: tdsl.transpose %kc {perm = array<i64: 1, 0, 2>} : !tdsl.tensor<[3, "P+T", 64], f32> -> !tdsl.tensor<["P+T", 3, 64], f32>
  %kt = tdsl.transpose %kc {perm = array<i64: 1, 0, 2>} : !tdsl.tensor<[3, "P+T", 64], f32> -> !tdsl.tensor<["P+T", 3, 64], f32>
  // CHECK: tdsl.reshape %q {shape = [#builtin.int<3>, "3*T", #builtin.int<64>]} : !tdsl.tensor<[9, T, 64], f32> -> !tdsl.tensor<[3, "3*T", 64], f32>
  %g = tdsl.reshape %q {shape = [#builtin.int<3>, "3*T", #builtin.int<64>]} : !tdsl.tensor<[9, T, 64], f32> -> !tdsl.tensor<[3, "3*T", 64], f32>
  // CHECK: tdsl.slice %kc {starts = [#builtin.int<0>, "P", #builtin.int<0>], stops = [#builtin.int<3>, "P+T", #builtin.int<64>]} : !tdsl.tensor<[3, "P+T", 64], f32> -> !tdsl.tensor<[3, T, 64], f32>
  %s = tdsl.slice %kc {starts = [#builtin.int<0>, "P", #builtin.int<0>], stops = [#builtin.int<3>, "P+T", #builtin.int<64>]} : !tdsl.tensor<[3, "P+T", 64], f32> -> !tdsl.tensor<[3, T, 64], f32>
  // CHECK: tdsl.transpose %kc : !tdsl.tensor<[3, "P+T", 64], f32> -> !tdsl.tensor<[3, 64, "P+T"], f32>
  %kT = tdsl.transpose %kc : !tdsl.tensor<[3, "P+T", 64], f32> -> !tdsl.tensor<[3, 64, "P+T"], f32>
  // CHECK: tdsl.reshape %q {shape = [#builtin.int<3>, #builtin.int<3>, "T", #builtin.int<64>]} : !tdsl.tensor<[9, T, 64], f32> -> !tdsl.tensor<[3, 3, T, 64], f32>
  %q4 = tdsl.reshape %q {shape = [#builtin.int<3>, #builtin.int<3>, "T", #builtin.int<64>]} : !tdsl.tensor<[9, T, 64], f32> -> !tdsl.tensor<[3, 3, T, 64], f32>
  // CHECK: tdsl.reshape %kT {shape = [#builtin.int<3>, #builtin.int<1>, #builtin.int<64>, "P+T"]} : !tdsl.tensor<[3, 64, "P+T"], f32> -> !tdsl.tensor<[3, 1, 64, "P+T"], f32>
  %k4 = tdsl.reshape %kT {shape = [#builtin.int<3>, #builtin.int<1>, #builtin.int<64>, "P+T"]} : !tdsl.tensor<[3, 64, "P+T"], f32> -> !tdsl.tensor<[3, 1, 64, "P+T"], f32>
  // A batched product: [3, 3] and [3, 1] batch dims broadcast.
  // CHECK: tdsl.matmul %q4, %k4 : !tdsl.tensor<[3, 3, T, 64], f32>, !tdsl.tensor<[3, 1, 64, "P+T"], f32> -> !tdsl.tensor<[3, 3, T, "P+T"], f32>
  %sc = tdsl.matmul %q4, %k4 : !tdsl.tensor<[3, 3, T, 64], f32>, !tdsl.tensor<[3, 1, 64, "P+T"], f32> -> !tdsl.tensor<[3, 3, T, "P+T"], f32>
  // A batched x times a rank-2 matrix.
  // CHECK: tdsl.matmul %q, %w : !tdsl.tensor<[9, T, 64], f32>, !tdsl.tensor<[64, 8], f32> -> !tdsl.tensor<[9, T, 8], f32>
  %p = tdsl.matmul %q, %w : !tdsl.tensor<[9, T, 64], f32>, !tdsl.tensor<[64, 8], f32> -> !tdsl.tensor<[9, T, 8], f32>
  %r = tdsl.reshape %sc {shape = [#builtin.int<9>, "T", "P+T"]} : !tdsl.tensor<[3, 3, T, "P+T"], f32> -> !tdsl.tensor<[9, T, "P+T"], f32>
  func.return %r : !tdsl.tensor<[9, T, "P+T"], f32>
}
