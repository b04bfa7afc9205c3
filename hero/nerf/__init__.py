"""Instant-NGP in PyTorch: hash grid, MLPs, occupancy grid, volume rendering, presets and metrics."""
