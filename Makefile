# flyby: two commands do all set-up themselves on a fresh machine.
#   make gates   run the phase gates on the embedded default (MuJoCo) -> output/report.html, output/videos/*.mp4
#   make test    run the whole test suite (gates included, `slow` full configurations excluded) -> output/test-report.html
#   make slow    the full configurations (minutes to tens of minutes): pytest -m slow
# System libraries (Debian/Ubuntu, once): make system-deps

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flyby-installed
PYTEST := $(PY) -m pytest
HTML_OPTS := --video-dir output/videos

.PHONY: gates test slow venv system-deps bench clean constraints

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

gates: $(STAMP)
	mkdir -p output
	$(PYTEST) tests/fullstack -m "(phase1 or phase2 or phase3 or phase4) and not slow" $(HTML_OPTS) --html output/report.html

test: $(STAMP)
	mkdir -p output
	$(PYTEST) tests -m "not slow" $(HTML_OPTS) --html output/test-report.html

slow: $(STAMP)
	mkdir -p output
	$(PYTEST) tests -m slow $(HTML_OPTS) --html output/slow-report.html

bench: $(STAMP)
	$(VENV)/bin/flyby bench --json output/metrics/bench.json

system-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 ffmpeg chromium

constraints: $(STAMP)
	$(PY) -m pip freeze | grep -v -iE "^-e|^flyby|^pip==|^setuptools==" | sed -e 's/+cpu//' -e 's|^torch @ .*|torch==2.13.0|' -e '/^# Editable/d' > constraints.txt

clean:
	rm -rf output .pytest_cache
