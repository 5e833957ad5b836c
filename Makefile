# Two commands do all the set-up: `make run` and `make test`.
# Each creates the venv and installs synth if needed, makes sure a Chromium
# exists, then runs the default pipeline or the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synth-installed
PIPELINE ?= pipelines/web.yaml
# Test files run in TEST_WORKERS processes (pytest-xdist), a file's tests together
# (they share module fixtures: a finished run, a cluster); much of the suite
# waits on Ray, subprocesses and servers, so two workers use two cores better.
TEST_WORKERS ?= 2

.PHONY: run test install chromium bench clean

run: install chromium
	$(BIN)/synth run $(PIPELINE)

test: install chromium
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

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
