"""The Slack adapter: one module per surface (messages, assistant pane, slash commands, buttons,
admin, App Home, shared files). Each parses Slack's payload, calls the platform-neutral services
in ``bot/`` and renders Block Kit; ``handlers.app`` builds the bolt app and registers them all.

No retrieval or LLM logic lives here. May import: ``bot`` (any package but ``bot.cli``),
``search`` for its error and model types. Imported only by ``bot.cli``.
"""
