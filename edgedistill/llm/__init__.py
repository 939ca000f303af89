"""Causal language-model distillation: teacher, text, student construction, token KD, training."""
