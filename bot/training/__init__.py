"""Fine-tuning the retrieval models: training runs and their progress, the quality gate and
the reranker blend, embedder promotion (re-embedding), synthetic questions, SFT export and
retrieval evaluation runs.

May import: bot.settings, bot.console, bot.answer, bot.state, bot.runtime, search.
"""
