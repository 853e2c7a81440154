"""gunicorn's configuration for the real stack's web service (`gunicorn --config
python:shop_search.gunicorn shop_search.wsgi`, docker-compose.yml).

gthread workers: WEB_WORKERS processes, each with WEB_THREADS request threads. Each process
loads the embedding model once (in the background at start-up, shop_search/wsgi.py) and its
threads share it, so memory grows with processes, not threads: docs/real-stack.md.

The embedded default (no QDRANT_URL: Qdrant Edge in the server's process) takes one process:
only one may open the store, and a second worker answered 503 to about half the searches. There
the workers' threads are served by one process instead, and the log says so.
"""

import os
import sys

bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
if os.environ.get("QDRANT_URL", "") in ("", ":memory:") and workers > 1:
    print(
        f"shop_search: the embedded vector store is opened by one process only: serving with 1 worker of "
        f"{workers * threads} threads instead of {workers} x {threads} (set QDRANT_URL to a Qdrant server "
        "for more processes).",
        file=sys.stderr,
    )
    workers, threads = 1, workers * threads
# a photo search on a busy CPU can take seconds; a stuck request is cut off after this
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
# requests in flight finish on SIGTERM (compose's stop_grace_period is longer)
graceful_timeout = 30
keepalive = 5
# the heartbeat file in memory: a slow container disk must not look like a hung worker
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
errorlog = "-"
