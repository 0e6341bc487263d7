"""Shared state: the Redis connection (or the embedded Valkey), the guard that keeps the bot
running when Redis is down, and the stores kept there: dedupe, rate limit, threads,
conversations, feedback.

May import: bot.settings, bot.answer (conversation turns).
"""
