"""Quality metrics of an embedding model against its teacher."""

from .metrics import accuracy_se, mean_cosine, paired_difference_se, pairwise_spearman, probe_fit

__all__ = ["mean_cosine", "paired_difference_se", "pairwise_spearman", "probe_fit", "accuracy_se"]
