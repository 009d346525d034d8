"""asm, the AI Scrum Master: GitHub issues labelled ready-for-dev become reviewed pull requests.

`celery -A asm worker` finds the Celery app here.
"""

from asm.celery_app import app

__all__ = ["app"]
