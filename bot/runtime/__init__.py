"""The running application's parts built from settings: one factory per part (index, models,
retriever, indexer), :class:`Services` that holds them, and the live reload that swaps in a
model promoted or rolled back by another process.

May import: bot.settings, bot.console, bot.answer, search.
"""
