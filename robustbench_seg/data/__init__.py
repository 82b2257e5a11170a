"""Datasets: Cityscapes, Cityscapes-C, synthetic cities."""
