"""Models whose linear layers run on stoicc kernels: the all-MiniLM-L6-v2 sentence encoder
(`minilm`: its weights, real or synthetic; `bert`: its forward pass in numpy; `compiled`:
its linear layers as compiled kernels). docs/minilm.md shows them at work."""
