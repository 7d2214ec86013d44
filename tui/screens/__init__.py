"""Screens: orchestrate widgets, run workers, talk to the engine and the store."""
