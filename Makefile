# Two entry points for a fresh machine (see README):
#   make demo  - runtime venv (no torch), runs the main job on the embedded default
#   make test  - test venv (+ Orthanc, the PACS the tests talk to, PostgreSQL, and Debian's chromium for the
#                reader app's browser tests), ruff, then the whole test suite
#   (make test-fast: the unit tier only, without the tests marked slow; see tests/conftest.py)
PY ?= python3
RUN_VENV := .venv-run
TEST_VENV := .venv-test
PIP_FLAGS := -q -c constraints.txt

.PHONY: demo test test-fast lint bench-data clean

$(RUN_VENV)/.installed: pyproject.toml setup.py constraints.txt
	$(PY) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(RUN_VENV)/bin/pip install $(PIP_FLAGS) -e '.[dicom,hub,reader,screenshots]'
	touch $@

$(TEST_VENV)/.installed: pyproject.toml setup.py constraints.txt
	$(PY) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(TEST_VENV)/bin/pip install $(PIP_FLAGS) -e '.[test,dicom,data,export,openvino,litert,hub,postgres]'
	touch $@

demo: $(RUN_VENV)/.installed
	$(RUN_VENV)/bin/python tools/demo.py

test: $(TEST_VENV)/.installed
	bash tools/install_orthanc.sh
	sh tools/install_postgres.sh
	sh tools/install_chromium.sh
	$(TEST_VENV)/bin/ruff check .
	$(TEST_VENV)/bin/python -m pytest -q

# The unit tier only (tests marked slow in tests/conftest.py are skipped): the loop while editing.
test-fast: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python -m pytest -q -m "not slow"

lint: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/ruff check .

bench-data: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python tools/bench_phantoms.py

clean:
	rm -rf $(RUN_VENV) $(TEST_VENV)
