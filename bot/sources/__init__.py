"""Knowledge sources: the registry shared through Redis, the per-channel source policy, and the
loaders of Slack-side sources (a channel's threads, files shared in Slack).

May import: bot.settings, search.
"""
