# The two commands of the quick start are `make run` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Two stamps: what `make run` needs (the client, then the server) and, on top, the test tools.
RUNTIME_STAMP := $(VENV)/.runtime
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/wasessions/v1/*.proto)
GEN    := client

.PHONY: install install-runtime libmagic proto check-proto lint typecheck pytest test run clean node-deps stubs buf buf-lint buf-breaking buf-baseline bench bench-quick

# NOTE: ./client (the wa-sessions-client distribution) goes in first: the server depends on it
# by name, and pip must find it installed rather than look it up on a package index.
$(RUNTIME_STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# NOTE: a venv from before the split holds `wa-sessions` (client and server in one).
	@$(PY) -m pip uninstall -q -y wa-sessions 2>/dev/null || true
	$(PY) -m pip install -q -e ./client
	$(PY) -m pip install -q -e .
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install-runtime: $(RUNTIME_STAMP)

install: $(STAMP)

# The whatsmeow engine (the default) loads Debian's libmagic1 when it starts. Root with apt-get
# installs it; anyone else gets the one command to run. The sim engine needs nothing.
# NOTE: DPKG, APT_GET and USER_ID can be overridden to check this logic without changing the
# machine, e.g. `make libmagic DPKG=false USER_ID=1000`.
DPKG    ?= dpkg
APT_GET ?= apt-get
USER_ID ?= $(shell id -u)
LIBMAGIC_HINT := the whatsmeow engine needs libmagic1: run `sudo apt-get update && sudo apt-get install -y libmagic1` (`make run ARGS="--engine sim"` needs nothing)

# ok, install (root with apt-get) or missing; evaluated only when a recipe needs it.
LIBMAGIC = $(shell if ! command -v $(firstword $(DPKG)) >/dev/null 2>&1 || $(DPKG) -s libmagic1 >/dev/null 2>&1; then echo ok; \
	elif [ "$(USER_ID)" = 0 ] && command -v $(firstword $(APT_GET)) >/dev/null 2>&1; then echo install; else echo missing; fi)

libmagic:
	$(if $(filter missing,$(LIBMAGIC)),$(error $(LIBMAGIC_HINT)))
	@if [ "$(LIBMAGIC)" = install ]; then \
		echo "installing libmagic1 (the whatsmeow engine needs it)"; \
		DEBIAN_FRONTEND=noninteractive $(APT_GET) update -qq && \
		DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends libmagic1 >/dev/null; \
	fi

# Generated code comes from this one command and is committed. descriptor_set.binpb is the
# contract with its comments (source info): what server reflection serves, so `grpcurl describe`
# shows them.
define protoc
	mkdir -p $(1)/wasessions/v1 && $(PY) -m grpc_tools.protoc -Iprotos \
		--python_out=$(1) --pyi_out=$(1) --grpc_python_out=$(1) \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=$(1) \
		--include_source_info --descriptor_set_out=$(1)/wasessions/v1/descriptor_set.binpb \
		$(PROTOS)
endef

proto: $(STAMP)
	$(call protoc,$(GEN))

check-proto: $(STAMP)
	@tmp=$$(mktemp -d) && $(call protoc,$$tmp) && \
	for f in $$tmp/wasessions/v1/*; do \
		cmp -s $$f $(GEN)/wasessions/v1/$$(basename $$f) || { echo "generated code drifted from protos: $$(basename $$f) (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done; \
	extra=$$(cd $(GEN)/wasessions/v1 && ls *_pb2*.py* | while read f; do [ -e $$tmp/wasessions/v1/$$f ] || echo $$f; done); \
	rm -rf $$tmp; \
	[ -z "$$extra" ] || { echo "stale generated files: $$extra"; exit 1; }; \
	echo "generated code matches protos"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

PYTEST_XML := $(VENV)/pytest-results.xml

pytest: $(STAMP) libmagic
	$(VENV)/bin/pytest -q --junitxml=$(PYTEST_XML) $(PYTEST_ARGS)

# make stops at the first step that fails: reaching the summary means every step passed. It is
# printed last, so the pass line is not buried above the bench output.
test: check-proto lint typecheck buf stubs pytest bench-quick
	@echo "make test: every step passed"
	@echo "  check-proto  generated code matches protos"
	@echo "  lint         ruff check, ruff format: clean"
	@echo "  typecheck    mypy strict: no issues"
	@echo "  buf          buf lint: ok; no breaking change against tools/buf/baseline.binpb"
	@echo "  stubs        TypeScript types of the Node example generated"
	@$(PY) -c 'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); \
		s = r if r.tag == "testsuite" else r[0]; n = lambda k: int(s.get(k, 0)); \
		print("  pytest       %d passed, %d skipped in %.0f s" % (n("tests") - n("skipped"), \
		n("skipped"), float(s.get("time", 0))))' $(PYTEST_XML)
	@echo "  bench-quick  every scenario ran (tiny sizes: no targets judged; make bench does)"

# Benchmarks (bench/README.md): the full run takes minutes and rewrites bench/README.md's table;
# the quick one uses tiny sizes, takes seconds and asserts no numbers: it keeps the code working.
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) -m bench --quick $(BENCH_ARGS)

# Clients in other languages -------------------------------------------------------------------
# npm packages are pinned by their committed package-lock.json files; `npm ci` installs exactly them.
NODE_EXAMPLE := examples/node
NODE_STAMP   := $(NODE_EXAMPLE)/node_modules/.installed
BUF_DIR      := tools/buf
BUF_STAMP    := $(BUF_DIR)/node_modules/.installed

$(NODE_STAMP): $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json
	cd $(NODE_EXAMPLE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BUF_STAMP): $(BUF_DIR)/package.json $(BUF_DIR)/package-lock.json
	cd $(BUF_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-deps: $(NODE_STAMP)

# Client stubs for other languages from the same protos: TypeScript types for the Node example
# (examples/node/types/, not committed). Python's are `make proto`.
stubs: $(NODE_STAMP)
	cd $(NODE_EXAMPLE) && npm run --silent types

# buf lint (rules and exceptions in protos/buf.yaml) and buf breaking against the committed
# baseline image of the contract (tools/buf/baseline.binpb); `make buf-baseline` moves it forward.
buf: buf-lint buf-breaking

buf-lint: $(BUF_STAMP)
	cd protos && ../$(BUF_DIR)/node_modules/.bin/buf lint
	@echo "buf lint: ok"

buf-breaking: $(BUF_STAMP)
	@sh $(BUF_DIR)/breaking.sh

buf-baseline: $(BUF_STAMP)
	@sh $(BUF_DIR)/breaking.sh --update

# `--engine sim` in ARGS needs no libmagic1.
run: $(RUNTIME_STAMP) $(if $(filter sim --engine=sim,$(ARGS)),,libmagic)
	$(VENV)/bin/wa-sessions-server $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
