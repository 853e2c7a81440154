# syntax=docker/dockerfile:1
# The real stack's images, from one recipe (docker-compose.yml builds both):
#   CPU image  (web, migrate, beat): --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
#   CUDA image (GPU workers):        --build-arg TORCH_INDEX=https://pypi.org/simple
#                                    (PyPI's Linux torch is the CUDA 13 build: NVIDIA driver 580+)
# Layers from the least to the most often changed: torch, the locked dependencies, the code.
# A code change rebuilds only the last layers.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_DEBUG=0 \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/data/media \
    HF_HOME=/models
WORKDIR /app

# torch pinned (the tests' version) from the index of this image's build, with what it needs
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

# every other dependency exactly as locked, hashes checked (bash requirements/lock.sh writes it)
COPY requirements/production.lock requirements/production.lock
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements/production.lock

# a user of its own; named volumes mounted on these folders start owned by it
RUN useradd --create-home --uid 10001 shop \
    && mkdir -p /data/media /models /var/lib/shop-search \
    && chown shop /data/media /models /var/lib/shop-search

COPY manage.py ./
COPY shop_search ./shop_search
COPY catalog ./catalog
COPY search ./search
COPY lab ./lab
COPY templates ./templates
COPY static ./static
# collectstatic needs settings, not the production key the container gets at run time
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput

USER 10001
EXPOSE 8000
# compose names each service's command; alone, the image serves the web app
CMD ["gunicorn", "--config", "python:shop_search.gunicorn", "shop_search.wsgi"]
