"""The lorebot application, one package per concern. Imports go one way, down this list
(each package says what it may import; tests/test_structure.py enforces it):

- ``bot.cli``       the command line: one module per command group. May import everything.
- ``handlers``      (beside ``bot``) the Slack adapter; imported only by ``bot.cli``.
- ``bot.slack``     the Slack side: SlackBot, the Web API client, the HTTP server, job notices.
- ``bot.service``   the platform-neutral conversation service every messaging surface calls.
- ``bot.jobs``      the job queue on Redis, workers, reindex and training jobs.
- ``bot.training``  fine-tuning runs, the quality gate, promotion, synthetic questions, SFT export.
- ``bot.runtime``   builds the running parts from settings; swaps in promoted models live.
- ``bot.state``     Redis (or the embedded Valkey) and the small stores kept there.
- ``bot.sources``   the knowledge-source registry, channel policy, Slack-side loaders.
- ``bot.answer``    the answer pipeline: prompts, citations, follow-ups, the LLM client.
- ``bot.console``, ``bot.settings``  the error users can fix and exit codes; every setting.

``search`` (retrieval, usable without Slack) is below all of them and never imports ``bot``.
"""
