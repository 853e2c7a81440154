"""WSGI entry point."""

import faulthandler
import os

from django.core.wsgi import get_wsgi_application

# a fatal signal (SIGBUS, SIGSEGV) leaves the thread's traceback in the log, not silence
faulthandler.enable()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_search.settings")
application = get_wsgi_application()

# SQLite's WAL files stay while the server runs, so that a full disk stops writes, not reads.
from shop_search.outages import sqlite_files_keep  # noqa: E402

sqlite_files_keep()

# Shoppers' queries are encoded one at a time, in request threads: one torch thread each
# keeps a busy machine from multiplying their cost (SEARCH_SERVE_TORCH_THREADS).
from search.retrieval.providers import serving_threads_apply, serving_warm_start  # noqa: E402

serving_threads_apply()
# The model, the store and the relevance cutoff load in the background from start-up.
serving_warm_start()

# The embedded default's server is also its indexer: it holds the vector index, so it indexes
# what other processes change (with a broker, Celery workers and beat do this instead).
from search.tasks import embedded_sweeper_start  # noqa: E402

embedded_sweeper_start()

# The vocabulary of typo correction and suggestions is read from the database once per process:
# in the background from start-up, not in the first shopper's search.
from search.selectors.lexicon import lexicon_warm  # noqa: E402

lexicon_warm()
