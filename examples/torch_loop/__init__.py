"""An existing plain PyTorch training loop, wrapped as the sweep's training function."""
