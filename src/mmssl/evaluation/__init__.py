"""Full-ranking evaluation: top-K metrics and the standard, mmssl and mmrec protocols."""

from mmssl.evaluation.metrics import (
    METRICS,
    NDCG_MODES,
    PROTOCOLS,
    evaluate,
    exclusion_matrix,
    rank_metrics,
    top_items,
)

__all__ = [
    "METRICS",
    "NDCG_MODES",
    "PROTOCOLS",
    "evaluate",
    "exclusion_matrix",
    "rank_metrics",
    "top_items",
]
