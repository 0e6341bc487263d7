"""The platform-neutral conversation service between a messaging surface (Slack, Feishu/Lark,
the terminal) and the answer pipeline: a question with its place goes in; dedupe, channel
policy, rate limit and thread memory are applied; answer events come out.

May import: bot.settings, bot.answer, bot.state, bot.sources.
"""
