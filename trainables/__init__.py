"""How ONE configuration trains: pure PyTorch, with Ray confined to `trainables.ray_adapter`.

`trainables.contract` is what a trial is given and reports (importable without torch);
`trainables.train.train(cfg, data)` is the only training loop: the sweep, the benchmark, the GPU
check and the tests all call it.
"""
