# Importing the Celery app here makes @shared_task bind to it in every process (Celery's
# documented Django layout). Creating the app is cheap: it opens no connection.
from .celery import app as celery_app

__all__ = ("celery_app",)
