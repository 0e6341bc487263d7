"""The Slack side of the bot: SlackBot (what the listeners in ``handlers`` call), the Web API
client, the HTTP server around the bolt app, and job progress messages in Slack.

May import: bot.settings, bot.answer, bot.state, bot.sources, bot.jobs, bot.service.
"""
