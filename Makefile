# Everything runs from the project's own files: `make test` and `make demo` install
# what is missing (.venv from requirements.lock, anvil from package-lock.json).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
ANVIL_BIN := node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

export PATH := $(BIN):$(PATH)
export APE_DATA_FOLDER := $(CURDIR)/.ape
export PYTHONPATH := $(CURDIR)
# The tests start hundreds of processes (agents, frontends, `ape run`), each importing the
# project's modules: where the environment sets PYTHONDONTWRITEBYTECODE each would compile
# them again. Their bytecode goes to __pycache__ (ignored by git).
unexport PYTHONDONTWRITEBYTECODE
# The stateful test's size: `ci` (100 examples of up to 30 steps) or `fuzz` (make fuzz).
export HYPOTHESIS_PROFILE ?= ci

.PHONY: install compile test test-fast demo bench sim fuzz lint lint-contracts lint-imports clean circuits chain rehearse browser system longrun

install: $(VENV)/.installed $(BIN)/anvil

$(VENV)/.installed: requirements.lock requirements-groth16py.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-groth16py.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BIN)/anvil: node_modules/.installed $(VENV)/.installed
	ln -sf $(CURDIR)/$(ANVIL_BIN) $@
	$@ --version | head -1

# ape recompiles a contract when its own file changes, not when a module it imports does
# (contracts/registry/*.vy): rebuild all of them whenever any contract source changes.
CONTRACTS := $(shell find contracts -name '*.vy')

# The registry's ABI ships with the package (committed, one entry a line); the client reads
# it, and tests/test_package.py fails when it differs from the compiled registry.
REGISTRY_ABI := provingmarket/chain/abi/Registry.json

compile: install .build/.compiled $(REGISTRY_ABI)

.build/.compiled: $(CONTRACTS) ape-config.yaml | install
	ape compile --force
	touch $@

$(REGISTRY_ABI): .build/.compiled
	$(BIN)/python -c 'import json, sys; abi = json.load(open(".build/__local__.json"))["contractTypes"]["Registry"]["abi"]; \
	  open(sys.argv[1], "w").write("[\n" + ",\n".join(json.dumps(item) for item in abi) + "\n]\n")' $@

# Three workers (pytest-xdist), each with its own anvil, a test file at a time: most of the
# suite waits on nodes, servers and child processes (two workers left a quarter of the two
# cores idle; three take it: 9 min instead of 12 measured here). The 25 slowest tests are
# listed at the end (the suite must stay under 12 minutes). What the tests need is made two
# at a time (Debian's packages beside pip and the compiler, pyright beside vyper-guard),
# each target's output kept together.
test:
	$(MAKE) -j2 --output-sync=target compile lint system
	ape test tests/ -q -n 3 --dist loadfile --durations=25

# System parts the tests start themselves, from Debian's packages: chromium and its
# chromedriver (the explorer's tests drive it headless), PostgreSQL (the shared store's
# tests run on a server of their own) and redis-server (the task queue's broker for
# distributed proving). Installed here when missing, in one apt-get, as root like the rest
# of the machine's setup (headless chromium needs none of its recommends); as another user,
# one line says what to install.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
REDIS_SERVER := /usr/bin/redis-server
POSTGRES := $(firstword $(wildcard /usr/lib/postgresql/*/bin/postgres))

system:
	@missing=""; \
	[ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ] || missing="$$missing chromium chromium-driver"; \
	[ -n "$(POSTGRES)" ] || missing="$$missing postgresql"; \
	[ -x $(REDIS_SERVER) ] || missing="$$missing redis-server"; \
	if [ -z "$$missing" ]; then exit 0; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "make test: the tests need Debian's$$missing; as root, run: apt-get install --no-install-recommends$$missing" >&2; \
	  exit 1; \
	fi

browser: system

# The tests that need no chain (tests/unit/): plain pytest without ape's plugin, so no
# anvil starts and nothing is compiled; the inner loop, under a minute.
test-fast: install
	$(BIN)/python -m pytest -p no:ape_test tests/unit -q

# At least 100,000 random steps of the registry's state machine (tests/chain/stateful), hostile
# terms included; prints the steps, the rate and what the runs reached.
fuzz: compile
	HYPOTHESIS_PROFILE=fuzz ape test tests/chain/stateful -q -s

# A local chain that stays up for the command-line walkthrough (README): anvil on
# 127.0.0.1:8545 with its default funded accounts (TEST::0..9 in ape) and the chain id ape
# expects of ethereum:local (1337), mining a block a second like a real chain would (so the
# chain's clock keeps up with the wall clock). Ctrl-C stops it.
chain: install
	$(BIN)/anvil --host 127.0.0.1 --port 8545 --chain-id 1337 --block-time 1

demo: compile
	ape run demo

# The testnet path (deploy, market, stake, post, prove, withdraw) as real commands through
# the Sepolia network config, against a local anvil with Sepolia's chain id, a base fee of
# 1 gwei and 12-second blocks (scripts/rehearse.py); prints each step's gas and fees.
rehearse: compile
	ape run rehearse

# The simulation (simulation/): every mechanism alone, then the router, on seeded workloads;
# the report and plots go to reports/sim-full/. `make test` runs the small configuration.
sim: compile
	ape run sim --config full

# The whole market under chaos (provingmarket/devnet/chaos/): 500 tasks over every mechanism,
# the agents proving through 3 queue workers (Redis) and the frontends reading the indexer's
# mirror on PostgreSQL, while 64 seeded SIGKILLs hit the frontends, the indexer, the agents,
# the workers, the broker and the database server (each restarted), processes are cut off
# the RPC and the RPC fails calls; exits nonzero if a task was lost or paid twice, an honest
# prover slashed or a process left. Logs and the report (chaos.txt, chaos.json) go to
# reports/chaos/. `make test` runs a short form (tests/processes/test_chaos.py).
.PHONY: chaos
chaos: compile system
	rm -rf reports/chaos
	$(BIN)/python -m provingmarket.devnet.chaos --tasks 500 --kills 64 --workers 3 --database --seed 1 \
	  --folder reports/chaos

bench: compile system
	ape run bench
	$(BIN)/python -m benches.orderbook_bench
	ape run keeper_bench
	$(BIN)/python -m benches.auction_bench
	$(BIN)/python -m benches.explorer_bench
	$(BIN)/python -m benches.proving_bench

# A long run stays flat (benches/long_run.py): LONGRUN_TASKS tasks (10,000 by default, about
# an hour here) through the orderbook frontend and a prover agent, each its own process, on
# an anvil with a 1 gwei base fee and a block a second; a row per 1,000 tasks paid (each
# process's memory, the keeper's and the agent's round times); exits 1 if either grows
# after the warm-up. `make longrun LONGRUN_TASKS=300` is the short form (a few minutes).
LONGRUN_TASKS ?= 10000
longrun: compile
	$(BIN)/python -m benches.long_run --tasks $(LONGRUN_TASKS)

# Regenerate the sample circuits' keys (single-party setup; see circuits/README.md): build.py
# writes them into the package, provingmarket/proving/samples/; foreign/build.py rebuilds the
# circomlib circuits in circuits/foreign/ (see circuits/foreign/README.md).
circuits: install
	$(BIN)/python circuits/build.py square
	$(BIN)/python circuits/build.py squarings --k 1000
	$(BIN)/python circuits/build.py squarings --k 10000
	$(BIN)/python circuits/build.py square --system plonk
	$(BIN)/python circuits/foreign/build.py

lint: install lint-contracts lint-imports typecheck
	ruff check .
	ruff format --check .

# The library's types (pyright in basic mode, pyrightconfig.json; from npm, pinned in package.json).
.PHONY: typecheck
typecheck: node_modules/.installed $(VENV)/.installed
	node_modules/.bin/pyright

# Static analysis of the Vyper sources (every .vy under contracts/, the registry's modules
# included) with vyper-guard, in a virtualenv of its own (.venv-lint, from
# requirements-lint.lock) and the project's vyper 0.4.3 as its parser. It fails on any
# finding not accepted, with a reason, in vyper-guard-baseline.json; docs/security.md
# explains each. slither cannot read Vyper 0.4 (modules, new AST nodes) yet.
LINT_VENV := .venv-lint
LINT_BIN := $(CURDIR)/$(LINT_VENV)/bin

$(LINT_VENV)/.installed: requirements-lint.lock
	test -x $(LINT_BIN)/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_BIN)/pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements-lint.lock
	touch $@

lint-contracts: $(LINT_VENV)/.installed $(VENV)/.installed
	HOME=$(CURDIR)/$(LINT_VENV) VIRTUAL_ENV=$(CURDIR)/$(LINT_VENV) PATH=$(BIN):$(LINT_BIN):/usr/bin:/bin \
	  COLUMNS=120 $(LINT_BIN)/vyper-guard analyze contracts -c .guardianrc.yaml \
	    --baseline-file vyper-guard-baseline.json --ci

# The layers (import-linter's contracts in pyproject.toml) with lint-imports from .venv-lint:
# it reads the sources it finds on PYTHONPATH (this checkout) and imports none of them.
lint-imports: $(LINT_VENV)/.installed
	$(LINT_BIN)/lint-imports

clean:
	rm -rf .build .ape .pytest_cache .hypothesis
