# flyby: two commands do all set-up themselves on a fresh machine.
#   make gates   run the phase gates on the embedded default (MuJoCo) -> output/report.html, output/videos/*.mp4
#   make test    run the whole test suite (gates included, `slow` full configurations excluded)
#                -> output/unit-report.html (parallel part) + output/test-report.html (gates, PX4: serial)
#   make slow    the full configurations (minutes to tens of minutes): pytest -m slow
#   make lint    ruff check + ruff format --check (CI runs it before the tests)
# System libraries (Debian/Ubuntu, once): make system-deps

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flyby-installed
PYTEST := $(PY) -m pytest
HTML_OPTS := --video-dir output/videos

PX4_ARCHIVE ?= $(firstword $(wildcard ../shared/px4/px4-sitl-*.tar.xz))

.PHONY: gates test slow lint venv system-deps bench clean constraints px4

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	# torch's Linux wheel pulls triton (GPU kernel compiler); flyby never uses it, and loading its LLVM
	# after Mesa's llvmpipe (MuJoCo EGL rendering) segfaults the process. torch runs without it.
	$(PY) -m pip uninstall --quiet -y triton
	# The install writes about 6 GB (torch's CUDA wheels); flush it before any timed gate runs, so the
	# first gates do not measure against the kernel writing it back.
	sync
	touch $(STAMP)

gates: $(STAMP)
	mkdir -p output
	$(PYTEST) tests/fullstack -m "(phase1 or phase2 or phase3 or phase4) and not slow" $(HTML_OPTS) --html output/report.html

# The whole suite in two sessions: first the tests that share cores well, in parallel on every core
# (pytest-xdist), then the `serial` ones (gates, PX4 flights, timed checks: tests/conftest.py marks them)
# alone, so no throughput figure is measured beside other work. Both always run; either failing fails.
test: $(STAMP)
	mkdir -p output
	status=0; \
	$(PYTEST) tests -m "not slow and not serial" -n auto $(HTML_OPTS) --html output/unit-report.html || status=$$?; \
	$(PYTEST) tests -m "not slow and serial" $(HTML_OPTS) --html output/test-report.html || status=$$?; \
	exit $$status

slow: $(STAMP)
	mkdir -p output
	$(PYTEST) tests -m slow $(HTML_OPTS) --html output/slow-report.html

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint podman/Containerfile

bench: $(STAMP)
	$(VENV)/bin/flyby bench --json output/metrics/bench.json

# Unpack the PX4 SITL test build (../shared/px4/) into .cache/px4; then: export PX4_DIR=$$PWD/.cache/px4
px4:
	@test -n "$(PX4_ARCHIVE)" || { echo "no PX4 SITL archive: pass PX4_ARCHIVE=path/to/px4-sitl-*.tar.xz"; exit 2; }
	rm -rf .cache/px4.tmp && mkdir -p .cache/px4.tmp
	tar -xJf "$(PX4_ARCHIVE)" -C .cache/px4.tmp
	test -x .cache/px4.tmp/build/px4_sitl_default/bin/px4
	rm -rf .cache/px4 && mv .cache/px4.tmp .cache/px4
	@echo "PX4 SITL unpacked: export PX4_DIR=$$PWD/.cache/px4"

system-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 ffmpeg chromium

constraints: $(STAMP)
	{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; $(PY) -m pip freeze | grep -v -iE "^-e|^flyby|^pip==|^setuptools==|^triton==" \
		| sed -e 's/+cpu//' -e '/^# Editable/d'; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf output .pytest_cache
