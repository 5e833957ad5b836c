# Two commands do all the set-up: `make run` and `make test`.
# Each creates the venv and installs synth if needed, makes sure a Chromium
# exists, then runs the default pipeline or the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synth-installed
PIPELINE ?= pipelines/web.yaml

.PHONY: run test install chromium bench clean

run: install chromium
	$(BIN)/synth run $(PIPELINE)

test: install chromium
	$(BIN)/pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

chromium: install
	@sh scripts/ensure-chromium.sh $(BIN)

bench: install chromium
	$(BIN)/python bench/record.py

clean:
	rm -rf out .pytest_cache
