# Every target builds its virtualenv from scratch when it is missing. What each
# needs: python3 (3.11 or newer, with venv), make, and network access to PyPI
# (dependencies come from the hash-checked locks in requirements/; building
# this project, even an editable install, fetches the exact setuptools that
# pyproject.toml's [build-system] names into pip's isolated build env).
PYTHON ?= python3
VENV   ?= .venv
TOOLS  ?= .venv-tools
REQ    := requirements
PY     := $(VENV)/bin/python
# make run ARGS="--rest 127.0.0.1:9181 --ipc-dir /run/x": flags for `portable-loader serve`
ARGS   ?=

# Stamps: the runtime install (make run) and the test install (make test;
# also a target of its own, .venv/.installed); the test lock holds the runtime
# pins unchanged, so a test install is also a runtime install.
RUN_STAMP  := $(VENV)/.runtime
STAMP      := $(VENV)/.installed
TOOLS_STAMP := $(TOOLS)/.installed

# Locked dependencies only, each checked against its hash; the project itself
# then without dependencies, so nothing unlocked slips in.
LOCKED_INSTALL = -m pip install --quiet --require-hashes -r
# setuptools announces, in a box, that a package-dir mapping (schema/ is the
# package loader.schemas) makes an editable install use an import finder.
# That is information, not a fault: silence that one message, nothing else.
PROJECT_INSTALL = PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(PY) -m pip install --quiet --no-deps -e .

.PHONY: run test test-fast test-system bench profile dist lock clean system-deps

$(RUN_STAMP): $(REQ)/runtime.txt pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) $(LOCKED_INSTALL) $(REQ)/runtime.txt
	$(PROJECT_INSTALL)
	touch $@

$(STAMP): $(REQ)/test.txt pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) $(LOCKED_INSTALL) $(REQ)/test.txt
	$(PROJECT_INSTALL)
	touch $@ $(RUN_STAMP)

$(TOOLS_STAMP): $(REQ)/tools.txt
	[ -x $(TOOLS)/bin/python ] || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python $(LOCKED_INSTALL) $(REQ)/tools.txt
	touch $@

# The demo stream and rule are copied into data/ once; after that data/ is the
# loader's own state (edit, delete or add files there while it runs).
run: $(RUN_STAMP) data/streams/demo.json data/rules/demo.json
	$(VENV)/bin/portable-loader serve --config etc/loader.yaml $(ARGS)

data/%.json: etc/demo/%.json
	mkdir -p $(dir $@)
	[ -e $@ ] || cp $< $@

# Also needs the programs in SYSTEM_TOOLS (below); tests/project/test_wheel.py builds
# the wheel and installs it with the runtime lock into a fresh venv.
test: $(STAMP) system-deps
	$(PY) -m pytest -q

# The in-process tests only (marker unit, not slow; tests/conftest.py marks them): seconds, for the edit loop.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "unit and not slow"

# The release under a real systemd: a Debian container booted with
# systemd-nspawn, the wheel installed offline as docs/operations.md says.
# Needs root; docs/operations.md, "The system test".
test-system: $(STAMP)
	PYTHON_VENV=$(PY) tests/system/run

# Wheels and sdists into dist/, built in an isolated env with the pinned
# setuptools: the loader, and the sdk as a distribution of its own
# (portable-loader-sdk, from sdk/pyproject.toml; docs/sdk.md).
dist: $(TOOLS_STAMP)
	rm -rf dist
	$(TOOLS)/bin/python -m build --quiet --outdir dist .
	$(TOOLS)/bin/python -m build --quiet --outdir dist sdk
	rm -rf sdk/*.egg-info sdk/build
	@ls -1 dist

# Re-resolve every lock to the newest versions pyproject.toml and tools.in
# allow (pip-compile --upgrade), with hashes. Resolved against PyPI alone,
# whatever index or wheel folder this machine's pip configuration adds, for
# the Python running it (3.11, the oldest supported, gives locks that every
# supported version installs). Then run make test before committing them.
COMPILE = env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
	$(TOOLS)/bin/pip-compile --quiet --upgrade --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links
lock: $(TOOLS_STAMP)
	$(COMPILE) --output-file $(REQ)/runtime.txt pyproject.toml
	$(COMPILE) --extra test --constraint $(REQ)/runtime.txt --output-file $(REQ)/test.txt pyproject.toml
	$(COMPILE) --allow-unsafe --output-file $(REQ)/tools.txt $(REQ)/tools.in

# Programs the tests use beyond Python: jq (log recipes), systemd-analyze
# (unit file check), setpriv (parent-death signal for plugins). Installed
# with apt-get (network access to the Debian archive) when missing and running
# as root; otherwise make test stops and names them.
SYSTEM_TOOLS := jq systemd-analyze setpriv

system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing with apt-get the Debian packages jq, systemd and util-linux for:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq systemd util-linux; \
	  else echo "missing:$$missing; install the Debian packages jq, systemd and util-linux" >&2; exit 1; fi; \
	fi

bench: $(STAMP)
	$(PY) -m bench

# Where a record's time goes in the loader (docs/benchmarks.md): py-spy from the tools lock samples it.
profile: $(STAMP) $(TOOLS_STAMP)
	$(PY) -m bench.profile --py-spy $(TOOLS)/bin/py-spy

clean:
	rm -rf $(VENV) $(TOOLS) dist build .cache .pytest_cache
