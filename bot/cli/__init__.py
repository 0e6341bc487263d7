"""The `lorebot` command line: ``bot.cli.main`` parses, one module per command group runs.
Imports stay lazy so `lorebot --help` is instant.

May import: everything in bot, handlers, search.
"""
