// RUN: stoicc opt %s -t llvm | filecheck %s

// Vectors: accesses aligned to their element, broadcasts as insert + zero-mask shuffle,
// reductions through vector.reduce with reassoc (then the accumulator), fma as llvm.fma.

// CHECK-LABEL: define void @vectors(ptr %a0, float %a1) {
// CHECK:         %[[V:v[0-9]+]] = load <8 x float>, ptr %a0, align 4
// CHECK-NEXT:    %[[E:v[0-9]+]] = insertelement <8 x float> poison, float %a1, i64 0
// CHECK-NEXT:    %[[B:v[0-9]+]] = shufflevector <8 x float> %[[E]], <8 x float> poison, <8 x i32> zeroinitializer
// CHECK-NEXT:    %[[F:v[0-9]+]] = call <8 x float> @llvm.fma.v8f32(<8 x float> %[[V]], <8 x float> %[[B]], <8 x float> %[[V]])
// CHECK-NEXT:    %[[R:v[0-9]+]] = call reassoc float @llvm.vector.reduce.fadd.v8f32(float 0x8000000000000000, <8 x float> %[[F]])
// CHECK-NEXT:    %[[T:v[0-9]+]] = fadd float %[[R]], %a1
// CHECK-NEXT:    %[[L:v[0-9]+]] = extractelement <8 x float> %[[F]], i64 3
// CHECK-NEXT:    %[[S:v[0-9]+]] = fadd float %[[T]], %[[L]]
// CHECK-NEXT:    store float %[[S]], ptr %a0
// CHECK-NEXT:    store <8 x float> <float 0x3FF0000000000000, float 0x4000000000000000, {{.*}}>, ptr %a0, align 4
func.func @vectors(%p: !ptr_xdsl.ptr, %s: f32) {
  %v = ptr_xdsl.load %p : !ptr_xdsl.ptr -> vector<8xf32>
  %b = vector.broadcast %s : f32 to vector<8xf32>
  %f = vector.fma %v, %b, %v : vector<8xf32>
  %r = vector.reduction <add>, %f, %s : vector<8xf32> into f32
  %l = vector.extract %f[3] : f32 from vector<8xf32>
  %t = arith.addf %r, %l : f32
  ptr_xdsl.store %t, %p : f32, !ptr_xdsl.ptr
  %k = arith.constant dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]> : vector<8xf32>
  ptr_xdsl.store %k, %p : vector<8xf32>, !ptr_xdsl.ptr
  func.return
}

// A stack slot (llvm.alloca: parallelize-loops' context) keeps its element type, count and
// alignment.
// CHECK-LABEL: define void @stack_slots(i64 %a0) {
// CHECK:         %[[S:v[0-9]+]] = alloca i64, i64 4, align 64
// CHECK-NEXT:    store i64 %a0, ptr %[[S]]
func.func @stack_slots(%v: i64) {
  %n = arith.constant 4 : i64
  %s = llvm.alloca %n x i64 {alignment = 64 : i64} : (i64) -> !llvm.ptr
  %p = builtin.unrealized_conversion_cast %s : !llvm.ptr to !ptr_xdsl.ptr
  ptr_xdsl.store %v, %p : i64, !ptr_xdsl.ptr
  func.return
}

// bf16 is its bits: widened by a shift, rounded to nearest even with integer ops (a NaN
// made quiet); float-to-int conversions saturate; libm has the functions LLVM lacks.

// CHECK-LABEL: define float @scalars(i16 %a0, float %a1) {
// CHECK-NEXT:  entry:
// CHECK-NEXT:    %[[W:v[0-9]+]] = zext i16 %a0 to i32
// CHECK-NEXT:    %[[SH:v[0-9]+]] = shl i32 %[[W]], 16
// CHECK-NEXT:    %[[X:v[0-9]+]] = bitcast i32 %[[SH]] to float
// CHECK-NEXT:    %[[BITS:v[0-9]+]] = bitcast float %a1 to i32
// CHECK-NEXT:    %[[TOP:v[0-9]+]] = lshr i32 %[[BITS]], 16
// CHECK-NEXT:    %[[ODD:v[0-9]+]] = and i32 %[[TOP]], 1
// CHECK-NEXT:    %[[BIAS:v[0-9]+]] = add i32 %[[ODD]], 32767
// CHECK-NEXT:    %[[SUM:v[0-9]+]] = add i32 %[[BITS]], %[[BIAS]]
// CHECK-NEXT:    %[[RND:v[0-9]+]] = lshr i32 %[[SUM]], 16
// CHECK-NEXT:    %[[NAN:v[0-9]+]] = fcmp uno float %a1, %a1
// CHECK-NEXT:    %[[Q:v[0-9]+]] = or i32 %[[TOP]], 64
// CHECK-NEXT:    %[[SEL:v[0-9]+]] = select i1 %[[NAN]], i32 %[[Q]], i32 %[[RND]]
// CHECK-NEXT:    %[[H:v[0-9]+]] = trunc i32 %[[SEL]] to i16
// CHECK-NEXT:    %[[I:v[0-9]+]] = call i32 @llvm.fptosi.sat.i32.f32(float %[[X]])
// CHECK-NEXT:    %[[E:v[0-9]+]] = call float @erff(float %a1)
// CHECK-NEXT:    ret float %[[E]]
// CHECK:       declare i32 @llvm.fptosi.sat.i32.f32(float)
// CHECK:       declare float @erff(float)
func.func @scalars(%h: bf16, %y: f32) -> f32 {
  %x = arith.extf %h : bf16 to f32
  %b = arith.truncf %y : f32 to bf16
  %i = arith.fptosi %x : f32 to i32
  %e = math.erf %y : f32
  func.return %e : f32
}

