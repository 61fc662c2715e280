# Two commands: `make demo` (the main job) and `make test` (the test suite).
# Each creates the virtual environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: demo test explain benchmark browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[demo,test]"
	# lxt (the AttnLRP authors' package) is the reference of the attnlrp tests; its declared dependencies
	# (bitsandbytes, open_clip, zennit, ...) are not needed for its explicit rules.
	$(PY) -m pip install -q --no-deps "lxt==2.1"
	# legrad-torch (the LeGrad authors' package) is the reference of the legrad tests; it pins open_clip <= 2.23,
	# but its code runs with the current open_clip (the tests restore the sequence-first layout it was written for).
	$(PY) -m pip install -q --no-deps "legrad-torch==1.1"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/relevance demo

explain: $(STAMP)
	$(VENV)/bin/relevance explain assets/samples --top-k 1 --out out/

# Debian's Chromium for the browser tests (never `playwright install`).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider

benchmark: $(STAMP)
	$(PY) benchmarks/bench_methods.py

clean:
	rm -rf $(VENV) out
