"""WSGI entry point."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_search.settings")
application = get_wsgi_application()

# The embedded default's server is also its indexer: it holds the vector index, so it indexes
# what other processes change (with a broker, Celery workers and beat do this instead).
from search.tasks import embedded_sweeper_start  # noqa: E402

embedded_sweeper_start()
