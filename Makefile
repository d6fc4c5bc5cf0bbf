# The two commands of the README:  `make run`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := espeak-ng sox festival festvox-ru
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test system-deps lint bench

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

run: system-deps $(VENV)/.installed
	$(VENV)/bin/ivr serve --demo

test: system-deps $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

bench: system-deps $(VENV)/.installed
	$(PY) bench/agi_load.py
