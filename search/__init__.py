"""Retrieval for lorebot: loading, chunking, embedding, indexing, fusion, reranking.

Usable without Slack: nothing here imports ``slack_bolt``, ``handlers`` or ``bot``.
"""
