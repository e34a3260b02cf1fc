# Every target builds .venv from scratch when it is missing, so a fresh clone
# needs nothing but python3 (with venv) on the PATH.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean system-deps

# Programs the tests use beyond Python: jq (log recipes), systemd-analyze
# (unit file check), setpriv (parent-death signal for plugins). Installed
# with apt-get when missing and running as root.
SYSTEM_TOOLS := jq systemd-analyze setpriv

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

test: $(STAMP) system-deps
	$(PY) -m pytest -q

system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq systemd util-linux; \
	  else echo "missing:$$missing; install the Debian packages jq, systemd and util-linux" >&2; exit 1; fi; \
	fi

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .cache .pytest_cache
