# Two entry points: `make demo` and `make test`. Each builds the local virtualenv it needs
# (.venv), idempotently: the install step reruns only when pyproject.toml or the constraints change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test chromium demo protos lint typecheck bench bench-tools clean docs

venv: $(STAMP)

$(STAMP): pyproject.toml constraints/test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints/test.txt -e '.[all,test]'
	# The official TF Serving stubs declare a dependency on the full `tensorflow` package;
	# they only need tensorflow-cpu's protos, which the [tensorflow] extra installs.
	$(PY) -m pip install -q --no-deps tensorflow-serving-api==2.21.0
	touch $(STAMP)

# `make test` is the whole check, as CI runs it: Debian's Chromium for the browser tests
# (installed once, when missing; Playwright drives /usr/bin/chromium and never downloads one),
# then ruff and mypy, then the suite.
test: $(STAMP) chromium lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

demo: $(STAMP)
	$(VENV)/bin/caliper demo --out runs/demo $(DEMO_ARGS)

protos: $(STAMP)
	$(PY) -m modelcaliper.wire.protos.build

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The peers bench/generator_capacity.py compares against (nginx unpacked locally, wrk, hey,
# k6 and Locust in .bench-venv); idempotent, needs root for apt-get.
bench-tools:
	bash bench/tools.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info

docs: $(STAMP)
	$(PY) -m modelcaliper.cli.reference > docs/cli.md
