# ATPLibrary — `make demo` runs the suites in parallel on the local lab; `make test` runs every test.
# The first `make` bootstraps: Debian packages (libvirt-python compiles against libvirt-dev), then .venv.

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
# pabot starts `robot` from PATH: make it the venv's.
export PATH := $(abspath $(BIN)):$(PATH)
VMS        ?= 4
PROCESSES  ?= $(VMS)
RESULTS    ?= results
HOST_PACKAGES := $(shell sed -e 's/\#.*//' ATPLibrary/lab/host-packages.txt)
# Only the tests need these: the qemu+ssh:// test starts a local sshd.
TEST_PACKAGES := openssh-server openssh-client
APT_INSTALL := apt-get install -y -q --no-install-recommends

.PHONY: all install host-packages test-packages lab lab-down lab-status demo test unit lint docs bench bench-verification bench-vdi bench-pabot clean

all: install

install: $(VENV)/.installed

# Install missing Debian packages as root; otherwise print exactly what to install.
host-packages:
	@missing=$$(for p in $(HOST_PACKAGES) $(EXTRA_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing Debian packages: $$missing"; \
	        timeout 300 apt-get update -q && DEBIAN_FRONTEND=noninteractive timeout 900 $(APT_INSTALL) $$missing; \
	    else \
	        echo "Missing Debian packages. Run as root:"; \
	        echo "  apt-get update && DEBIAN_FRONTEND=noninteractive $(APT_INSTALL) $$missing"; exit 1; \
	    fi; \
	fi

test-packages:
	@$(MAKE) --no-print-directory host-packages EXTRA_PACKAGES="$(TEST_PACKAGES)"

$(VENV)/.installed: pyproject.toml | host-packages
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || $(MAKE) --no-print-directory host-packages EXTRA_PACKAGES=python3-venv
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	timeout 900 $(BIN)/pip install -q --upgrade pip
	timeout 900 $(BIN)/pip install -q -e '.[dev]'
	touch $@

lab: install
	$(BIN)/atp lab up --vms $(VMS)

lab-status: install
	$(BIN)/atp lab status

lab-down: install
	$(BIN)/atp lab down

# The main job: every suite in parallel, one lab guest per pabot process, then a one-screen summary.
# ATP_RUN_ID names the run in the results archive (`atp report show <id>`). --pabotlib (on a free port, so
# runs never collide) lets DataDriver hand its rows to the processes under --testlevelsplit; the demo splits by
# suite (the VDI suite's tests build on one another), PABOT_OPTIONS adds pabot options.
PABOT_OPTIONS ?=
demo: install
	$(BIN)/atp lab up --vms $(VMS)
	rm -rf $(RESULTS)
	export ATP_RUN_ID="demo-$$(date -u +%Y%m%dT%H%M%SZ)-$$$$"; \
	timeout 1800 $(BIN)/pabot --processes $(PROCESSES) --pabotlib --pabotlibport 0 $(PABOT_OPTIONS) \
	    --listener ATPLibrary.archive.ArchiveListener --variablefile variables/lab.py \
	    --outputdir $(RESULTS) suites/; rc=$$?; \
	echo; $(BIN)/atp summary $(RESULTS)/output.xml || [ $$rc != 0 ] || rc=1; \
	exit $$rc

# All tests: unit tests, integration tests on real lab guests (the session fixture brings the lab up),
# then a short robot run on the lab.
test: install test-packages
	timeout 2400 $(BIN)/pytest -ra tests/unit tests/integration; rc=$$?; [ $$rc = 5 ] && rc=0; [ $$rc = 0 ] || exit $$rc
	rm -rf $(RESULTS)/smoke
	timeout 900 $(BIN)/robot --variablefile variables/lab.py --include smoke --outputdir $(RESULTS)/smoke suites/

# Speed figures (printed, never asserted): typing rate confirmed on a guest, keyword overhead over raw QMP.
bench: install
	$(BIN)/atp lab up --vms $(VMS)
	timeout 600 $(BIN)/python bench/bench_typing.py

# Verification latency, injection -> guest report, on 1 and on 8 guests at once, beside the qemu-ga ping floor.
bench-verification: install
	$(BIN)/atp lab up --vms 8
	timeout 900 $(BIN)/python bench/bench_verification.py --guests 8 --events 1000

# pabot speed-up: the same suites with 1 process and with BENCH_PROCESSES on as many guests; wall time, CPU of
# robot and QEMU, the ideal for this machine and S/ideal (printed, never asserted).
BENCH_PROCESSES ?= 8
bench-pabot: install
	$(BIN)/atp lab up --vms $(BENCH_PROCESSES)
	timeout 3600 $(BIN)/python bench/bench_pabot.py --processes $(BENCH_PROCESSES)

# VDI client over the in-process simulator (no lab): listing 1 000 VMs by pages, batch-starting 50 VMs.
bench-vdi: install
	timeout 600 $(BIN)/python bench/bench_vdi.py --vms 1000 --batch 50 --page-size 10 100

unit: install
	$(BIN)/pytest -q tests/unit

lint: install
	$(BIN)/ruff check ATPLibrary tests variables bench
	$(BIN)/ruff format --check ATPLibrary tests variables bench
	$(BIN)/mypy ATPLibrary
	$(BIN)/robocop check suites resources

# Keyword docs: HTML for people, the JSON and libspec (XML) specs that IDEs (RobotCode, RIDE) load.
# Committed; tests/unit/test_docs.py fails when they differ from the library (run `make docs` and commit).
docs: install
	$(BIN)/python -m robot.libdoc --name ATPLibrary ATPLibrary docs/ATPLibrary.html
	$(BIN)/python -m robot.libdoc --format JSON --specdocformat HTML ATPLibrary docs/ATPLibrary.json
	$(BIN)/python -m robot.libdoc --format LIBSPEC --specdocformat HTML ATPLibrary docs/ATPLibrary.libspec
	sed -i 's#$(CURDIR)/##g' docs/ATPLibrary.html docs/ATPLibrary.json docs/ATPLibrary.libspec  # paths in the repo

clean:
	rm -rf $(RESULTS) .pytest_cache .mypy_cache .ruff_cache
