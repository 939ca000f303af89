"""Distillation: loss registry, strategies, teacher-output cache, training loop."""
