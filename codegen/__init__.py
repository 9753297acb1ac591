"""Code-generation helpers shared by the passes: the loop builder, the loop nests that
read each format's storage, type replacement, row splits and the accelerator's operand
views. The passes themselves (one ModulePass per module) live in `stoicc_py.passes`."""
