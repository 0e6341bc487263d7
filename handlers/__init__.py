"""Slack listeners, one module per surface. Built in the Slack bot issue; empty until then."""
