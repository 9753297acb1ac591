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

// A reduction is a call of LLVM's reduce intrinsic, declared once, whose `reassoc`
// lets LLVM add in a tree; an accumulator is added after, with the op's own flags.
// CHECK-LABEL: func.func @reduce
// CHECK-NEXT:    %[[Z:.*]] = llvm.mlir.constant(-0.000000e+00 : f32) : f32
// CHECK-NEXT:    %[[S:.*]] = llvm.call @llvm.vector.reduce.fadd.v4f32(%[[Z]], %a) {fastmathFlags = #llvm.fastmath<fast>} : (f32, vector<4xf32>) -> f32
// CHECK-NEXT:    %[[Z2:.*]] = llvm.mlir.constant(-0.000000e+00 : f32) : f32
// CHECK-NEXT:    %[[T:.*]] = llvm.call @llvm.vector.reduce.fadd.v4f32(%[[Z2]], %a) {fastmathFlags = #llvm.fastmath<reassoc,contract>} : (f32, vector<4xf32>) -> f32
// CHECK-NEXT:    %[[U:.*]] = llvm.fadd %[[T]], %acc {fastmathFlags = #llvm.fastmath<contract>} : f32
// CHECK-NEXT:    func.return %[[S]], %[[U]] : f32, f32
func.func @reduce(%a: vector<4xf32>, %acc: f32) -> (f32, f32) {
  %s = vector.reduction <add>, %a fastmath<fast> : vector<4xf32> into f32
  %t = vector.reduction <add>, %a, %acc fastmath<contract> : vector<4xf32> into f32
  func.return %s, %t : f32, f32
}

// Integer lanes add exactly; the NaN-propagating maximum is fmaximum.
// CHECK-LABEL: func.func @reduce_int
// CHECK-NEXT:    %[[S:.*]] = llvm.call @llvm.vector.reduce.add.v8i32(%a) : (vector<8xi32>) -> i32
// CHECK-NEXT:    %[[M:.*]] = llvm.call @llvm.vector.reduce.fmaximum.v4f32(%b) {fastmathFlags = #llvm.fastmath<reassoc>} : (vector<4xf32>) -> f32
func.func @reduce_int(%a: vector<8xi32>, %b: vector<4xf32>) -> (i32, f32) {
  %s = vector.reduction <add>, %a : vector<8xi32> into i32
  %m = vector.reduction <maximumf>, %b : vector<4xf32> into f32
  func.return %s, %m : i32, f32
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

// CHECK-DAG: llvm.func @llvm.vector.reduce.fadd.v4f32(f32, vector<4xf32>) -> f32
// CHECK-DAG: llvm.func @llvm.vector.reduce.add.v8i32(vector<8xi32>) -> i32
// CHECK-DAG: llvm.func @llvm.vector.reduce.fmaximum.v4f32(vector<4xf32>) -> f32
