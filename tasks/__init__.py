"""Prefect tasks: thin, typed wrappers around ``seed_story`` library calls (the library never imports Prefect)."""
