# Two set-up commands: `make demo` and `make test`. Everything else is done for you.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build on this project's machines; set TORCH_SPEC="torch" (or a CUDA wheel) elsewhere.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= var/sample
DEMO_PRODUCTS ?= 300
HOST ?= 127.0.0.1:8000

.PHONY: venv demo test serve migrate clean help

help:
	@echo "make demo   create .venv, migrate, generate + index a sample catalog, serve on http://$(HOST)"
	@echo "make test   create/update .venv and run the whole test suite"

$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned resolver would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
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

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var/ media/ .pytest_cache
