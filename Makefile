# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv if missing.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo serve test browser lint format bench clean i18n

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Links Hilos writes (survey pages, unsubscribe, the demo's summary) point where it listens,
# unless HILOS_BASE_URL says otherwise (a deployment behind a proxy).
BASE_URL = $${HILOS_BASE_URL:-http://$(HOST):$(PORT)}

demo: install
	HILOS_BASE_URL=$(BASE_URL) $(BIN)/hilos demo
	HILOS_BASE_URL=$(BASE_URL) $(BIN)/hilos serve --host $(HOST) --port $(PORT)

serve: install
	HILOS_BASE_URL=$(BASE_URL) $(BIN)/hilos serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Only the browser tests (Playwright driving /usr/bin/chromium); screenshots in test-results/browser.
browser: install
	$(BIN)/pytest tests/e2e/browser

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/identify.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-results

# Refresh the translation catalogs after changing UI text; then translate the new msgstr in es.
i18n: install
	$(BIN)/pybabel extract -F babel.cfg --no-location --project=Hilos --copyright-holder="Hilos contributors" -o src/hilos/locale/messages.pot .
	$(BIN)/pybabel update -i src/hilos/locale/messages.pot -d src/hilos/locale -w 100 --ignore-obsolete
