# Image for the real stack (web, GPU workers, beat). Build: docker compose build
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DJANGO_DEBUG=0 \
    STATIC_ROOT=/app/staticfiles
WORKDIR /app
# torch from PyTorch's CUDA index for the GPU workers; pass
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu for a CPU-only image.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124
RUN pip install "torch>=2.3,<3" --index-url ${TORCH_INDEX}
COPY pyproject.toml README.md manage.py ./
COPY shop_search ./shop_search
COPY catalog ./catalog
COPY search ./search
COPY lab ./lab
COPY templates ./templates
COPY static ./static
# collectstatic needs settings, not the production key the container gets at run time
RUN pip install ".[server]" && DJANGO_DEBUG=1 python manage.py collectstatic --noinput
RUN useradd --create-home shop && mkdir -p /data/media /models && chown -R shop /data /models
USER shop
EXPOSE 8000
CMD ["gunicorn", "shop_search.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
