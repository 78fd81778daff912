# The two commands of the quick start are `make run` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/wasessions/v1/*.proto)
GEN    := client

.PHONY: install proto check-proto lint typecheck pytest test run clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Generated code comes from this one command and is committed.
define protoc
	$(PY) -m grpc_tools.protoc -Iprotos \
		--python_out=$(1) --pyi_out=$(1) --grpc_python_out=$(1) \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=$(1) \
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

pytest: $(STAMP)
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

test: check-proto lint typecheck pytest

run: $(STAMP)
	$(VENV)/bin/wa-sessions-server $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
