"""The lorebot application: settings, CLI, wiring and the answer pipeline."""
