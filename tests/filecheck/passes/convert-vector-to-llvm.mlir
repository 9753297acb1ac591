// RUN: stoicc opt %s -p convert-vector-to-llvm | filecheck %s
// Vector register ops become llvm ops; vector loads and stores get element alignment.

// A numpy buffer is only element-aligned, so a <4 x f32> access is `align 4`.
// CHECK-LABEL: func.func @access
// CHECK-NEXT:    %v = llvm.load %p {alignment = 4 : i64} : !llvm.ptr -> vector<4xf32>
// CHECK-NEXT:    llvm.store %v, %p {alignment = 4 : i64} : vector<4xf32>, !llvm.ptr
func.func @access(%p: !llvm.ptr) {
  %v = llvm.load %p : !llvm.ptr -> vector<4xf32>
  llvm.store %v, %p : vector<4xf32>, !llvm.ptr
  func.return
}

// fma is LLVM's, broadcast a lane-0 insert and a zero-mask shuffle.
// CHECK-LABEL: func.func @fma
// CHECK:         %[[U:.*]] = llvm.mlir.undef : vector<4xf32>
// CHECK:         %[[L:.*]] = llvm.insertelement %s, %[[U]][%{{.*}} : i32] : vector<4xf32>
// CHECK:         %[[B:.*]] = llvm.shufflevector %[[L]], %[[L]] [0, 0, 0, 0] : vector<4xf32>
// CHECK:         llvm.intr.fma(%[[B]], %a, %a) : (vector<4xf32>, vector<4xf32>, vector<4xf32>) -> vector<4xf32>
func.func @fma(%s: f32, %a: vector<4xf32>) -> vector<4xf32> {
  %b = vector.broadcast %s : f32 to vector<4xf32>
  %r = vector.fma %b, %a, %a : vector<4xf32>
  func.return %r : vector<4xf32>
}

// A reduction halves the vector until one lane is left (reassociated adds).
// CHECK-LABEL: func.func @reduce
// CHECK-NEXT:    %[[LO:.*]] = llvm.shufflevector %a, %a [0, 1] : vector<4xf32>
// CHECK-NEXT:    %[[HI:.*]] = llvm.shufflevector %a, %a [2, 3] : vector<4xf32>
// CHECK-NEXT:    %[[H:.*]] = llvm.fadd %[[LO]], %[[HI]] {fastmathFlags = #llvm.fastmath<fast>} : vector<2xf32>
// CHECK:         %[[Q:.*]] = llvm.fadd %{{.*}}, %{{.*}} {fastmathFlags = #llvm.fastmath<fast>} : vector<1xf32>
// CHECK-NEXT:    %[[S:.*]] = llvm.bitcast %[[Q]] : vector<1xf32> to f32
// CHECK-NEXT:    func.return %[[S]] : f32
func.func @reduce(%a: vector<4xf32>) -> f32 {
  %s = vector.reduction <add>, %a fastmath<fast> : vector<4xf32> into f32
  func.return %s : f32
}

// Integer lanes add exactly.
// CHECK-LABEL: func.func @reduce_int
// CHECK:         llvm.add %{{.*}}, %{{.*}} : vector<4xi32>
// CHECK:         llvm.bitcast %{{.*}} : vector<1xi32> to i32
func.func @reduce_int(%a: vector<8xi32>) -> i32 {
  %s = vector.reduction <add>, %a : vector<8xi32> into i32
  func.return %s : i32
}

// Bytes reinterpreted as the i32 lanes of a 4-byte dot product, and one lane
// extracted: a one-lane shuffle and a bitcast (xDSL's llvm has no extractelement).
// CHECK-LABEL: func.func @bits
// CHECK-NEXT:    %[[W:.*]] = llvm.bitcast %a : vector<16xi8> to vector<4xi32>
// CHECK-NEXT:    %[[L:.*]] = llvm.shufflevector %[[W]], %[[W]] [2] : vector<4xi32>
// CHECK-NEXT:    %[[E:.*]] = llvm.bitcast %[[L]] : vector<1xi32> to i32
// CHECK-NEXT:    func.return %[[E]] : i32
func.func @bits(%a: vector<16xi8>) -> i32 {
  %w = vector.bitcast %a : vector<16xi8> to vector<4xi32>
  %e = vector.extract %w[2] : i32 from vector<4xi32>
  func.return %e : i32
}
