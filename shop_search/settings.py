"""One settings module. With no environment at all it is the embedded default:
SQLite, Qdrant Edge under var/, Celery tasks run in-process. Each real-stack
service is switched on by its own variable (DATABASE_URL, CELERY_BROKER_URL, QDRANT_URL).
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from shop_search.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_locale,
    env_retired,
    env_seconds,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SHOP_SEARCH_VAR_DIR", BASE_DIR / "var"))


# Django's debug mode (tracebacks and settings on error pages) only when asked for. Setting
# DJANGO_SECRET_KEY is what makes this a production deployment (HTTPS, strict key rules); without
# one, the embedded default makes a key of its own once and keeps it in var/ (never a key
# published anywhere, as a built-in one would be).
DEBUG = env_bool("DJANGO_DEBUG", False)
PRODUCTION = bool(os.environ.get("DJANGO_SECRET_KEY"))
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
# keys seen in examples and tutorials (this README's included): never a production key
KNOWN_KEYS = {"change-me", "changeme", "secret", "secret-key", "dev-only-insecure-key-change-me", "django-insecure"}


def secret_key_problem(key: str) -> str:
    """What is wrong with a production secret key; "" when it will do (Django's own rule: 50
    characters or more, 5 different ones or more, not a generated development key)."""
    if not key:
        return "DJANGO_SECRET_KEY is not set"
    if key.lower() in KNOWN_KEYS or key.startswith("django-insecure-"):
        return "DJANGO_SECRET_KEY is a well-known example key"
    if len(key) < 50 or len(set(key)) < 5:
        return "DJANGO_SECRET_KEY is too short or too simple (50 characters or more, 5 different ones or more)"
    return ""


def local_secret_key(path: Path) -> str:
    """This installation's own key, made on first start and kept (owner-only) in var/."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="ascii") as out:
            out.write(key)
    except FileExistsError:  # another process made it first
        return path.read_text(encoding="ascii").strip()
    return key


if PRODUCTION and (problem := secret_key_problem(SECRET_KEY)):
    raise RuntimeError(
        f'{problem}; production needs a key of its own: python -c "import secrets; print(secrets.token_urlsafe(50))"'
    )
if not SECRET_KEY:
    SECRET_KEY = local_secret_key(VAR_DIR / "secret_key")
# Requests naming another host are refused (400, never a debug page): serving other machines,
# name the host they use (DJANGO_ALLOWED_HOSTS=shop.example.com or the machine's address).
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# Production serves over HTTPS (DJANGO_HTTPS=0 to try the real stack on http://localhost):
# redirect to it, secure cookies, HSTS. Behind a proxy that terminates TLS, it must set
# X-Forwarded-Proto. `manage.py check --deploy` passes with no warnings (tests/test_settings.py).
HTTPS = env_bool("DJANGO_HTTPS", PRODUCTION)
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every response (shop_search/security.py): scripts, styles and
# everything else from this site only; images may also be data:/blob: (previews).
CONTENT_SECURITY_POLICY = os.environ.get(
    "DJANGO_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "django_htmx",
    "template_partials",
    "catalog",
    "search",
    # offline tooling (evaluation, training, demo models); the serving app never imports it
    "lab",
]

MIDDLEWARE = [
    # first: a container's health probe is answered before host checks and HTTPS redirects
    "shop_search.health.HealthMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "shop_search.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # after authentication (staff may send more), before any view reads the body
    "shop_search.limits.RequestSizeLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "search.web.visits.VisitMiddleware",
    # last: its process_exception turns a database or disk that cannot take a write into a 503
    "shop_search.outages.OutageMiddleware",
]

ROOT_URLCONF = "shop_search.urls"
WSGI_APPLICATION = "shop_search.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
if "DATABASE_URL" not in os.environ:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded default keeps its state here
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if sys.argv[1:2] == ["runserver"]:
    # The embedded default's server starts a thread per request: a connection kept for reuse is
    # kept by a thread that is gone, one per request, until PostgreSQL refuses more ("remaining
    # connection slots are reserved", found by running tests/test_concurrency.py on it).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Shoppers write the search log on every search while merchandisers save: SQLite must let
    # writers queue and readers carry on (tests/test_concurrency.py drives exactly that).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # how long a writer waits for the lock before "database is locked" (then the write
            # answers 503 and the search log waits: catalog/outages.py)
            "timeout": env_seconds("SQLITE_BUSY_SECONDS", 20),
            # A transaction that reads and then writes (an admin save) cannot upgrade its read lock
            # while another connection writes, and SQLite fails it at once, whatever the timeout.
            # IMMEDIATE takes the write lock at BEGIN, where the timeout above does wait for it.
            "transaction_mode": "IMMEDIATE",
            # WAL: readers never wait for the writer, nor it for them; NORMAL sync is what WAL
            # needs for durability against a crashed process (not a power cut mid-commit).
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        }
    )
    # Tests get a file too, as the shop does: an in-memory database shares one cache between
    # connections, where a long read (the lexicon) fails a browser test's session write at once
    # ("database table is locked") instead of letting WAL keep readers and the writer apart.
    # One per test process: two test runs in one checkout must not share it.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get(
            "SQLITE_TEST_NAME", str(Path(tempfile.gettempdir()) / f"shop_search-test-{os.getpid()}.sqlite3")
        )
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Set by the Docker image, which runs collectstatic; the embedded default serves the
# files straight from static/ through WhiteNoise's finders, with no build step.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = STATIC_ROOT is None
MEDIA_URL = os.environ.get("MEDIA_URL", "/media/")
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Product images are served by Django unless a proxy or object store takes over (then 0).
SERVE_MEDIA = env_bool("SERVE_MEDIA", True)
# Product images on an S3-compatible store (AWS S3, MinIO, Cloudflare R2, ...) through
# django-storages, when a bucket is named: web, workers and beat may then run on different
# hosts. Else they live in MEDIA_ROOT (one host, or a shared volume).
AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            # another S3-compatible store than AWS: its URL (e.g. http://minio:9000)
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            # unset: boto3 finds credentials itself (an instance role, ~/.aws)
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            "location": os.environ.get("AWS_LOCATION", "media"),
            # a CDN or public bucket host for image URLs; else URLs are signed and expire
            "custom_domain": os.environ.get("AWS_S3_CUSTOM_DOMAIN") or None,
            "querystring_auth": env_bool("AWS_QUERYSTRING_AUTH", True),
            "querystring_expire": env_int("AWS_QUERYSTRING_EXPIRE", 3600),
            # images are named by their content: the same name is the same bytes
            "file_overwrite": False,
        },
    }
    SERVE_MEDIA = False


def media_origin() -> str:
    """Where product images are served from when not from this site: the storefront's
    Content-Security-Policy lets images load from it."""
    if not AWS_STORAGE_BUCKET_NAME:
        return ""
    options = STORAGES["default"]["OPTIONS"]
    if options["custom_domain"]:
        return f"https://{options['custom_domain']}"
    if options["endpoint_url"]:
        from urllib.parse import urlsplit

        endpoint = urlsplit(options["endpoint_url"])
        return f"{endpoint.scheme}://{endpoint.netloc}"
    region = (
        f"https://{AWS_STORAGE_BUCKET_NAME}.s3.{options['region_name']}.amazonaws.com" if options["region_name"] else ""
    )
    return f"https://{AWS_STORAGE_BUCKET_NAME}.s3.amazonaws.com {region}".strip()


MEDIA_ORIGIN = media_origin()

# Uploads: an image bigger than this is refused before Pillow opens it.
CATALOG_MAX_IMAGE_BYTES = env_int("CATALOG_MAX_IMAGE_BYTES", 20 * 1024 * 1024)
# Decoded size limit: a small file can decode to a huge bitmap (decompression bomb).
CATALOG_MAX_IMAGE_PIXELS = env_int("CATALOG_MAX_IMAGE_PIXELS", 40_000_000)
# The pixels one process decodes at once, all images together (uploads, imports, the indexer's
# threads, shoppers' photos); more waits its turn. About 4 bytes a pixel while decoding, so the
# default bounds decoding to about 250 MB a process; one image over it is decoded alone.
CATALOG_DECODE_PIXELS = env_int("CATALOG_DECODE_PIXELS", 60_000_000)
# How prices read ("$26.39", "26,39 $" in de_DE): a locale Babel knows, checked at start-up
CATALOG_LOCALE = env_locale("CATALOG_LOCALE", "en_US")
# (0.2's per-connection timeout overlapped the next)
env_retired(
    "CATALOG_IMAGE_FETCH_TIMEOUT",
    "CATALOG_IMAGE_FETCH_SECONDS bounds a download in all (connecting included); set that instead.",
)
# Image URLs in imports (catalog/fetching.py): one download may take this long in all, one import
# this long for all its downloads, and only public addresses are fetched unless this is on.
CATALOG_IMAGE_FETCH_SECONDS = env_seconds("CATALOG_IMAGE_FETCH_SECONDS", 20)
CATALOG_IMPORT_FETCH_BUDGET_SECONDS = env_seconds("CATALOG_IMPORT_FETCH_BUDGET_SECONDS", 600)
# An admin import that has not said it is alive for this long (it does every 10 s) lost its
# process: the server's sweep (or beat, every 30 s) resumes it after its last written chunk.
CATALOG_IMPORT_STALL_SECONDS = env_int("CATALOG_IMPORT_STALL_SECONDS", 45)
CATALOG_IMAGE_URL_ALLOW_PRIVATE = env_bool("CATALOG_IMAGE_URL_ALLOW_PRIVATE", False)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# The largest request body anyone may send (a photo search: the image limit and the form), and
# signed-in staff (an admin import with its images); larger is a 413 before it is read
# (shop_search/limits.py).
REQUEST_MAX_BYTES = env_int("REQUEST_MAX_BYTES", 25 * 1024 * 1024)
STAFF_REQUEST_MAX_BYTES = env_int("STAFF_REQUEST_MAX_BYTES", 1024 * 1024 * 1024)
FILE_UPLOAD_HANDLERS = [
    "shop_search.limits.BoundedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- Celery ---------------------------------------------------------------------------
# No broker configured means the embedded default: tasks run in-process at commit time.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
if CELERY_TASK_ALWAYS_EAGER:
    # Eager apply_async still prepares a producer; the in-memory transport keeps it from
    # aiming at an AMQP server on localhost (and from warning about it on every command).
    CELERY_BROKER_URL = "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ROUTES = {
    "search.tasks.embed_products_task": {"queue": "embeddings"},
    "search.tasks.sweep_pending_products_task": {"queue": "celery"},
    "search.tasks.relevance_fit_task": {"queue": "celery"},
}
CELERY_TASK_ACKS_LATE = True
# A worker that dies mid-task (killed, out of memory) leaves its message to be delivered again:
# a worker process lost is re-queued at once; a whole worker lost, after the broker's visibility
# timeout (Redis: an hour by default), here a few minutes. It must exceed the longest task.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
SEARCH_QUEUE_VISIBILITY_SECONDS = env_int("SEARCH_QUEUE_VISIBILITY_SECONDS", 300)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": SEARCH_QUEUE_VISIBILITY_SECONDS}
# The sweep sends a pending row again only this long after it was last queued: by then the
# broker has redelivered the message if a worker lost it, so a message still queued is not doubled.
SEARCH_QUEUE_REDELIVERY_SECONDS = env_int("SEARCH_QUEUE_REDELIVERY_SECONDS", SEARCH_QUEUE_VISIBILITY_SECONDS * 2)
# Sending a task to a broker that is down fails in seconds, not after kombu's retries.
CELERY_BROKER_CONNECTION_TIMEOUT = env_seconds("CELERY_BROKER_CONNECTION_TIMEOUT", 4)
# Embedding batches are long: one prefetched message per worker process keeps the
# queue fair between GPU workers.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "sweep-pending-products": {
        "task": "search.tasks.sweep_pending_products_task",
        "schedule": env_seconds("SEARCH_SWEEP_INTERVAL", 300),
    },
    "resume-interrupted-imports": {"task": "catalog.tasks.import_jobs_resume_task", "schedule": 30},
    # the relevance model, fitted from the catalog when the model or the catalog's size changed
    "fit-relevance": {"task": "search.tasks.relevance_fit_task", "schedule": 300},
}

# --- search / ML ----------------------------------------------------------------------
SEARCH_EMBEDDING_MODEL = os.environ.get("SEARCH_EMBEDDING_MODEL", "openai/clip-vit-base-patch32")
SEARCH_DEVICE = os.environ.get("SEARCH_DEVICE", "auto")  # auto | cpu | cuda | cuda:1 | mps
SEARCH_ENCODE_BATCH_SIZE = env_int("SEARCH_ENCODE_BATCH_SIZE", 32)
# Threads that read, hash and decode product images while the model encodes (0: one per core).
SEARCH_DECODE_THREADS = env_int("SEARCH_DECODE_THREADS", 0)
# Chunks decoded ahead of the one the model encodes: auto = 2 on a GPU, 0 on a CPU (where
# decoding beside the model's own threads slows it more than it saves).
_decode_ahead = env_str("SEARCH_DECODE_AHEAD", "auto").lower()
if _decode_ahead != "auto" and not _decode_ahead.isdigit():
    raise ImproperlyConfigured(
        f"SEARCH_DECODE_AHEAD={_decode_ahead!r} is not understood: it takes auto or a whole "
        "number of chunks (0, 1, 2...)."
    )
SEARCH_DECODE_AHEAD = None if _decode_ahead == "auto" else int(_decode_ahead)
# Product ids per embedding task: an import of 10,000 rows sends 10,000 / this many tasks.
SEARCH_INDEX_BATCH_SIZE = env_int("SEARCH_INDEX_BATCH_SIZE", 64)
# Products still pending this long after their last change are re-sent by the sweep.
SEARCH_SWEEP_GRACE_SECONDS = env_int("SEARCH_SWEEP_GRACE_SECONDS", 120)
# Embedded default (no broker): the server process holds the vector index, and a thread in it
# indexes pending products this often, so changes made by other processes (a terminal import,
# a bulk update with mark_pending) reach search by themselves.
SEARCH_EMBEDDED_SWEEP_SECONDS = env_seconds("SEARCH_EMBEDDED_SWEEP_SECONDS", 2)
# torch threads in the web server process (shoppers' query encoding, and the embedded indexer):
# torch's default (one per core, waiting on each other at every operation) multiplies a query's
# time when the machine is busy. 0 = torch's default. Workers and commands keep torch's default.
SEARCH_SERVE_TORCH_THREADS = env_int("SEARCH_SERVE_TORCH_THREADS", 1)

# Ranking: normalized (per-modality z-scores fused over the fields a product has), or the
# baselines avg | rrf | dbsf | text | image. Weights per modality for `normalized`.
SEARCH_STRATEGY = os.environ.get("SEARCH_STRATEGY", "normalized")
# "text=1,image=0.8,keyword=1" (keyword: the keyword leg; a modality left out is not used); read
# by search.retrieval.fusion.weights_parse, checked at start-up (search.E002: manage.py check,
# migrate, runserver).
SEARCH_FUSION_WEIGHTS = os.environ.get("SEARCH_FUSION_WEIGHTS", "text=1,image=1,keyword=0.25")
# A fitted calibration (`manage.py calibrate_fusion`, docs/architecture.md, "Fusion calibration") replaces those
# weights for word searches: "auto" uses the one fitted for the model in use, if any; "off"
# never; a path names a calibration file to use whatever the model.
SEARCH_FUSION_CALIBRATION = env_str("SEARCH_FUSION_CALIBRATION", "auto")
if SEARCH_FUSION_CALIBRATION.lower() in ("off", "0", "false", "no"):  # "no" in any of the usual ways
    SEARCH_FUSION_CALIBRATION = "off"
# Candidates fetched per modality; the normalisation and the facets are computed over them.
SEARCH_CANDIDATES = env_int("SEARCH_CANDIDATES", 200)
# The relevance cutoff (search/retrieval/cutoff.py): the share of queries that name nothing
# that must find nothing, per modality; higher is stricter.
SEARCH_CUTOFF_QUANTILE = env_float("SEARCH_CUTOFF_QUANTILE", 0.99)
# A word search matches the products the relevance model (search/retrieval/relevance.py, fitted
# from the catalog) judges at least this likely to be a good match; 0 matches everything above
# the cutoff, as fused. Chosen on generated shops (docs/quality.md, "Honest match sets").
SEARCH_RELEVANCE_THRESHOLD = env_float("SEARCH_RELEVANCE_THRESHOLD", 0.4, minimum=0, maximum=1)
# The most products a query matches (per leg); more are cut, and the count says "more than".
SEARCH_MAX_MATCHES = env_int("SEARCH_MAX_MATCHES", 1000)
# The product attributes shoppers filter on (keys as imported, in the order shown under
# Category and Brand): "colour,material,size". Each product's attributes are all in the index
# already, so changing this needs a restart, not a re-index. Empty: no attribute filters.
SEARCH_FACET_ATTRIBUTES = os.environ.get("SEARCH_FACET_ATTRIBUTES", "colour,color,size,material,pattern")
# A query's price phrase ("under $20") and its words that name a facet value the shop has
# ("red", "mugs") become filters the shopper sees as chips (docs/architecture.md). False: words
# are only words.
SEARCH_QUERY_FILTERS = env_bool("SEARCH_QUERY_FILTERS", True)
# Opt-in: the share of word searches in relevance order whose first page has two adjacent
# products (of the first ten) trade places, logged with it, so that the click log can tell how
# much shoppers look at each position apart from what is shown there (docs/data-teams.md,
# "Position bias"). 0: never; 0.05 costs a shopper little.
SEARCH_SWAP_PROBABILITY = env_float("SEARCH_SWAP_PROBABILITY", 0.0, minimum=0, maximum=1)
# How often a web process looks whether the catalog changed, to rebuild the vocabulary that
# corrects typos and suggests (0: at every search, for tests).
SEARCH_VOCABULARY_SECONDS = env_seconds("SEARCH_VOCABULARY_SECONDS", 5)

# Search and click log: session ids are stored only as a keyed hash (this key, else SECRET_KEY).
SEARCH_LOG_HASH_KEY = os.environ.get("SEARCH_LOG_HASH_KEY", "")
# The storefront and API answer before their search is written: a thread per process writes
# the log in batches (a click on a search still being written waits for it). 0: write it in
# the request, as commands always do.
SEARCH_LOG_DEFERRED = env_bool("SEARCH_LOG_DEFERRED", True)
# A click counts for a search only from the session that ran it and within this many seconds.
SEARCH_CLICK_WINDOW_SECONDS = env_int("SEARCH_CLICK_WINDOW_SECONDS", 3600)
# A search typed keystroke by keystroke is logged once it settles: no keystroke for this long
# (the storefront's box counts a pause this long as a new search, with its own history entry).
SEARCH_SETTLE_SECONDS = env_seconds("SEARCH_SETTLE_SECONDS", 2)

# A photo search keeps the shopper's photo (downsized to this many pixels on its longer side)
# so that its URL can name it; it is deleted this many days after its last upload.
SEARCH_PHOTO_PIXELS = env_int("SEARCH_PHOTO_PIXELS", 512)
# A shopper's photo larger than this is refused from its header (a phone's photo is 12 MP; the
# storefront scales a photo down in the browser before sending it).
SEARCH_PHOTO_MAX_PIXELS = env_int("SEARCH_PHOTO_MAX_PIXELS", 16_000_000)
SEARCH_PHOTO_DAYS = env_float("SEARCH_PHOTO_DAYS", 7)

# Qdrant: a server (QDRANT_URL), else the embedded engine at QDRANT_PATH (":memory:": tests).
QDRANT_URL = os.environ.get("QDRANT_URL", "")
QDRANT_API_KEY = os.environ.get("QDRANT_API_KEY") or None
QDRANT_PATH = os.environ.get("QDRANT_PATH", str(VAR_DIR / "qdrant"))
SEARCH_COLLECTION = os.environ.get("SEARCH_COLLECTION", "products")
# A Qdrant cluster: how the collection is laid out when this app creates it (later changes need
# Qdrant's own resharding/replication APIs). Shards spread the points over the nodes; each shard
# is kept on QDRANT_REPLICATION_FACTOR nodes; a write is acknowledged once
# QDRANT_WRITE_CONSISTENCY_FACTOR of them have it. One node: leave all three at 1.
QDRANT_SHARD_NUMBER = env_int("QDRANT_SHARD_NUMBER", 1)
QDRANT_REPLICATION_FACTOR = env_int("QDRANT_REPLICATION_FACTOR", 1)
QDRANT_WRITE_CONSISTENCY_FACTOR = env_int("QDRANT_WRITE_CONSISTENCY_FACTOR", 1)
if (
    min(QDRANT_SHARD_NUMBER, QDRANT_REPLICATION_FACTOR, QDRANT_WRITE_CONSISTENCY_FACTOR) < 1
    or QDRANT_WRITE_CONSISTENCY_FACTOR > QDRANT_REPLICATION_FACTOR
):
    raise RuntimeError(
        "QDRANT_SHARD_NUMBER, QDRANT_REPLICATION_FACTOR and QDRANT_WRITE_CONSISTENCY_FACTOR must be 1 or more, "
        "and the write consistency no more than the replication factor (a write cannot wait for more copies "
        f"than there are); got {QDRANT_SHARD_NUMBER}, {QDRANT_REPLICATION_FACTOR}, {QDRANT_WRITE_CONSISTENCY_FACTOR}."
    )
# The embedded engine when QDRANT_URL is unset: "edge" (Qdrant Edge, beta: Qdrant's engine in
# this process, in QDRANT_PATH/<collection>) or "local" (qdrant-client's local mode, which
# Qdrant documents for development and tests).
SEARCH_VECTOR_ENGINE = env_choice("SEARCH_VECTOR_ENGINE", "edge", ("edge", "local"))

# Rate limits per client address (search/web/throttling.py): scope=N/period for search (storefront
# and API), photo, suggest and clicks; a scope left out is not limited. 429 with Retry-After.
SEARCH_RATE_LIMITS = os.environ.get("SEARCH_RATE_LIMITS", "search=300/min,photo=30/min,suggest=600/min,clicks=300/min")
# How many proxies in front of the app set X-Forwarded-For (0: the client's address is the
# connection's, and a client cannot choose its own by sending the header).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# Django's cache (rate limit counts): per process unless CACHE_URL names a Redis shared by all.
if os.environ.get("CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["CACHE_URL"],
            # a Redis that does not answer costs a request half a second, not a hang
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }

REST_FRAMEWORK = {
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "shop_search.limits.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # `format` is the export format of /api/exports/clicks, not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "shop_search API",
    "DESCRIPTION": "Multimodal product search: words or a photo, fused over text and image vectors.",
    "VERSION": "0.2.0",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "search.web.schema.schema_finish"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "filters": {"one_line": {"()": "shop_search.security.OneLine"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        # Its retry warnings bury the one message that says what to change.
        "huggingface_hub": {"level": "ERROR"},
        # a request for another host: one line, not a traceback per scanner's request
        "django.security.DisallowedHost": {"filters": ["one_line"]},
    },
}
