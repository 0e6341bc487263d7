"""Jobs: the queue on Redis lists (one lock per source, heartbeats), the worker, and what a
reindex or training job runs; how a job reads in chat.

May import: bot.settings, bot.console, bot.sources, bot.training, search.
"""
