"""Prefect flows: they only compose the tasks in ``tasks/``."""
