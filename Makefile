# The two commands of the README:  `make run`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# Speech (espeak-ng, festival + Russian voice, sox), ffmpeg (pydub: MP3 of recordings) and the invoice PDF
# font; tests add a browser.
RUN_PACKAGES := espeak-ng sox ffmpeg festival festvox-ru fonts-dejavu-core
TEST_PACKAGES := $(RUN_PACKAGES) chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test system-deps test-system-deps lint bench

define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

system-deps:
	$(call install_missing,$(RUN_PACKAGES))

test-system-deps:
	$(call install_missing,$(TEST_PACKAGES))

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

run: system-deps $(VENV)/.installed
	$(VENV)/bin/ivr serve --demo

test: test-system-deps $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

bench: system-deps $(VENV)/.installed
	$(PY) bench/agi_load.py --all --backend both
	$(PY) bench/lookup_1m.py
	$(PY) bench/ami_replay.py --backend both
