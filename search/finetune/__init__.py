"""Fine-tuning of the retrieval models on the team's own data, and the registry that promotes them.

Training code imports torch and sentence-transformers lazily, inside the functions that train, so
importing this package (or the bot) never loads them.
"""
