"""Inference, metrics, evaluation and training loops (mmsegmentation-compatible protocols)."""
