"""The answer pipeline: retrieve, decide whether the evidence is enough, then write the answer
with the LLM (or extractively) and check its citations; follow-up questions and thread turns.

May import: bot.settings, search.
"""
