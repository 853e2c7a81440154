"""gunicorn's configuration for the real stack's web service (`gunicorn --config
python:shop_search.gunicorn shop_search.wsgi`, docker-compose.yml).

gthread workers: WEB_WORKERS processes, each with WEB_THREADS request threads. Each process
loads the embedding model once (in the background at start-up, shop_search/wsgi.py) and its
threads share it, so memory grows with processes, not threads: docs/real-stack.md.
"""

import os

bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
# a photo search on a busy CPU can take seconds; a stuck request is cut off after this
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
# requests in flight finish on SIGTERM (compose's stop_grace_period is longer)
graceful_timeout = 30
keepalive = 5
# the heartbeat file in memory: a slow container disk must not look like a hung worker
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
errorlog = "-"
