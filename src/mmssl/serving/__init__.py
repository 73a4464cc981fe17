"""Answering queries from a trained run: the NumPy recommender (no torch for known users)."""

from mmssl.serving.recommender import FILE_NAME, Recommendation, Recommender

__all__ = ["FILE_NAME", "Recommendation", "Recommender"]
