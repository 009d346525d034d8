"""Thin Celery tasks: primitive arguments in, delegate to `asm`, a one-line summary out."""
