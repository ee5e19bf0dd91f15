"""Cluster-restricted retrieval: the SASRec sequence model, the per-cluster item index, and
``recommend.Recommender``, the one implementation of the online logic (Serve app and evaluation).

Submodules import torch and faiss; import them directly (``serendipity.retrieval.recommend``).
"""
