# Every target builds .venv from scratch when it is missing, so a fresh clone
# needs nothing but python3 (with venv) on the PATH.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The demo stream and rule are copied into data/ once; after that data/ is the
# loader's own state (edit, delete or add files there while it runs).
run: $(STAMP) data/streams/demo.json data/rules/demo.json
	$(PY) -m loader serve --config etc/loader.yaml

data/%.json: etc/demo/%.json
	mkdir -p $(dir $@)
	[ -e $@ ] || cp $< $@

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .cache .pytest_cache
