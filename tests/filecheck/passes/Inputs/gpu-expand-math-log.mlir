builtin.module {
  func.func @f(%x: f32) -> f32 {
    %l = math.log %x : f32
    func.return %l : f32
  }
}
