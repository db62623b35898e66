# The single entry point: every workflow step and every README command is a
# target here, so anything CI does can be reproduced locally with `make <target>`.
# `make help` (the default) lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# Extra arguments for `mlops run`, e.g. make pipeline ARGS="--force".
ARGS ?=
# Where run summaries and validation reports go (read by `mlops` too).
export MLOPS_REPORTS_DIR ?= reports

# Created once by `python -m venv`; uv then installs exactly the lock file.
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# One retry: a uv cache being restored (actions/cache extracting into it while
# another job on the same machine installs) can miss a file for a moment.
$(VENV)/.installed: pyproject.toml uv.lock | $(BIN)/uv
	$(BIN)/uv sync --frozen --compile-bytecode || { sleep 5; $(BIN)/uv sync --frozen --compile-bytecode; }
	@touch $@

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "; print "Usage: make <target>\n"} \
		/^[a-zA-Z_-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: $(VENV)/.installed ## Create .venv and install the locked dependencies (uv)

.PHONY: lint
lint: install ## flake8 (+bugbear), import-linter, mypy; actionlint, zizmor, schemas on .github and the Kubernetes overlays; hadolint
	$(BIN)/flake8 src ml_service tests infra/act
	$(BIN)/lint-imports
	$(BIN)/mypy --strict ml_service
	$(BIN)/mypy src tests/models infra/act
	$(BIN)/actionlint
	$(BIN)/zizmor --offline --quiet .github/
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(BIN)/hadolint environments/scoring/Dockerfile infra/mlflow/Dockerfile
	VALIDATE=$(BIN)/kubernetes-validate infra/kubernetes/check-manifests.sh

.PHONY: test
test: lint pytest ## Run lint, then every test (unit, data, integration, e2e)

# Two pytest-xdist workers: the e2e tests mostly wait on Docker builds and
# rollouts, so two overlap well even on two cores (21 min -> 12 min measured).
PYTEST_ARGS ?= -n 2 --dist worksteal

.PHONY: pytest
pytest: install ## Run every test without lint (CI's test job; lint has its own job)
	$(BIN)/pytest $(PYTEST_ARGS)

# Test tools that are not Python packages. Tests that need one skip with the
# reason when it is missing, unless REQUIRE_<ENGINE>=1 (as in CI).
TOOLS_DIR ?= .cache/tools
AZURITE_VERSION := 3.37.0
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_TEST_DEPS := postgresql docker-registry openssh-server prometheus

.PHONY: test-deps
test-deps: ## Install the engines the tests start: PostgreSQL, docker-registry, sshd, Prometheus (apt), Azurite (npm)
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v docker-registry >/dev/null 2>&1 || missing="$$missing docker-registry"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -qq; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; \
	fi
	@if [ ! -x $(TOOLS_DIR)/node_modules/.bin/azurite-blob ]; then \
		echo "installing azurite@$(AZURITE_VERSION) into $(TOOLS_DIR)"; \
		npm install --silent --no-audit --no-fund --prefix $(TOOLS_DIR) azurite@$(AZURITE_VERSION); \
	fi

.PHONY: data-test
data-test: install ## Run the Great Expectations suite tests on good and bad data
	$(BIN)/pytest tests/data

.PHONY: data
data: install ## Regenerate the model's example dataset (data/diabetes.csv) and the bad test fixtures
	$(BIN)/mlops data
	$(BIN)/python tests/data/make_fixtures.py

.PHONY: environments
environments: install ## Export environments/*/requirements.txt (hash-pinned) from uv.lock
	$(BIN)/uv export --frozen --quiet --no-dev --no-emit-project --no-header \
		--output-file environments/training/requirements.txt
	$(BIN)/uv export --frozen --quiet --no-emit-project --no-header \
		--output-file environments/ci/requirements.txt
	$(BIN)/uv export --frozen --quiet --only-group scoring --no-emit-project --no-header \
		--output-file environments/scoring/requirements.txt
	$(BIN)/uv export --frozen --quiet --only-group scoring-sklearn --no-emit-project --no-header \
		--output-file environments/scoring/requirements-sklearn.txt
	$(BIN)/uv export --frozen --quiet --only-group sbom --no-emit-project --no-header \
		--output-file environments/scoring/sbom-requirements.txt

.PHONY: pipeline
pipeline: install ## Run the training pipeline: validate, train, evaluate, gate, register
	@rm -f $(MLOPS_REPORTS_DIR)/pipeline.md
	$(BIN)/mlops run --json-out $(MLOPS_REPORTS_DIR)/pipeline.json $(ARGS)
	@$(BIN)/mlops summary --json-in $(MLOPS_REPORTS_DIR)/pipeline.json \
		--markdown $(MLOPS_REPORTS_DIR)/pipeline.md > /dev/null

# Model version for serve/image/release/promote; empty means the alias' version
# (champion for serve, image and release; qa for promote).
# VERSION may come from a workflow input: its text is taken without expanding
# it (a value such as $$(shell ...) would run, even under make -n), and only a
# number is accepted.
VERSION ?=
version_text := $(value VERSION)
digitless = $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst \
	6,,$(subst 7,,$(subst 8,,$(subst 9,,$(1)))))))))))
version_junk := $(strip $(call digitless,$(version_text)))
ifneq ($(version_junk)$(filter-out 0 1,$(words $(version_text))),)
$(error VERSION must be a model version number, got '$(version_text)')
endif
version_arg = $(if $(version_text),--version $(version_text))

# Image digest for promote/verify-attestation (with VERSION): the sha256:...
# a release run's QA job pushed (its output digest=), so its production job
# deploys exactly what its reviewers approved even if a later run moved alias
# qa. Taken without expanding it, like VERSION; only sha256: and 64 lowercase
# hex digits are accepted; empty means not given.
DIGEST ?=
digest_text := $(value DIGEST)
digest_hex := $(patsubst sha256:%,%,$(digest_text))
hexless = $(subst a,,$(subst b,,$(subst c,,$(subst d,,$(subst e,,$(subst f,,$(call \
	digitless,$(1))))))))
# One word per character of a hex string (to count them).
hex_spaced = $(subst 0,0 ,$(subst 1,1 ,$(subst 2,2 ,$(subst 3,3 ,$(subst 4,4 ,$(subst \
	5,5 ,$(subst 6,6 ,$(subst 7,7 ,$(subst 8,8 ,$(subst 9,9 ,$(subst a,a ,$(subst \
	b,b ,$(subst c,c ,$(subst d,d ,$(subst e,e ,$(subst f,f ,$(1)))))))))))))))))
digest_ok := $(and $(filter 1,$(words $(digest_text))),$(filter sha256:%,$(digest_text)),$(if \
	$(strip $(call hexless,$(digest_hex))),,ok),$(filter 64,$(words $(call hex_spaced,$(digest_hex)))))
ifneq ($(digest_text),)
ifeq ($(digest_ok),)
$(error DIGEST must be sha256: followed by 64 lowercase hex digits, got '$(digest_text)')
endif
endif
digest_arg = $(if $(digest_text),--digest $(digest_text))

.PHONY: serve
serve: install ## Serve the champion (or VERSION=n) locally with uvicorn, no Docker
	$(BIN)/mlops serve $(version_arg)

.PHONY: image
image: install ## Build the scoring image for the champion (or VERSION=n); needs Docker
	$(BIN)/mlops image $(version_arg)

.PHONY: release
release: install ## Build if needed, run as QA container, smoke-test, set alias qa
	$(BIN)/mlops release $(version_arg)

.PHONY: card
card: install ## Print the model card of the QA version (or VERSION=n); SUMMARY_OUT appends it there
	@$(BIN)/mlops card $(version_arg) $(if $(SUMMARY_OUT),--markdown "$(SUMMARY_OUT)")

.PHONY: sign
sign: install ## Sign VERSION=n, registered before signing, after re-checking it the old way
	@$(if $(version_text),,echo "usage: make sign VERSION=<the version to sign>" >&2; exit 2)
	$(BIN)/mlops sign $(version_arg)

.PHONY: verify
verify: install ## Verify the champion (or VERSION=n) against its signature and the trusted keys
	$(BIN)/mlops verify $(version_arg)

.PHONY: signing-key
signing-key: install ## Make a key pair: KEY=<file outside the repo> (private), NAME=<public key's name>
	@$(if $(KEY),,echo "usage: make signing-key KEY=<private key file, outside the repository> [NAME=pipeline]" >&2; exit 2)
	$(BIN)/mlops signing-key --private '$(KEY)' $(if $(NAME),--name '$(NAME)')

.PHONY: ephemeral-signing-key
ephemeral-signing-key: install ## A signing key for this job's throw-away registry (builds), trusted beside the repository's
	$(BIN)/mlops signing-key --ephemeral

.PHONY: push
push: install ## Push the QA image (or VERSION=n) to MLOPS_IMAGE_REGISTRY, e.g. ghcr.io/owner
	$(BIN)/mlops push $(version_arg) $(if $(OUTPUTS_OUT),--outputs "$(OUTPUTS_OUT)")

.PHONY: verify-attestation
verify-attestation: install ## Verify GitHub's provenance + SBOM attestations of the QA image, or VERSION=n DIGEST=sha256:... (Actions)
	$(BIN)/mlops verify-attestation $(version_arg) $(digest_arg)

.PHONY: production-check
production-check: install ## Production job (Actions): deploy only with a DEPLOY_TARGET and required reviewers; OUTPUTS_OUT gets deploy=
	$(BIN)/mlops production-check $(if $(OUTPUTS_OUT),--outputs "$(OUTPUTS_OUT)")

.PHONY: sbom
sbom: install ## Write the SBOM carried by IMAGE=name@sha256:... to SBOM_OUT (default reports/sbom.cdx.json)
	$(BIN)/mlops sbom --image "$${IMAGE:?set IMAGE=name@sha256:...}" --out "$(or $(SBOM_OUT),reports/sbom.cdx.json)"

.PHONY: remote-engine
remote-engine: install ## For an ssh:// DOCKER_HOST, install DOCKER_SSH_KEY and DOCKER_SSH_KNOWN_HOSTS
	$(BIN)/mlops remote-engine

.PHONY: kubeconfig
kubeconfig: install ## For the Kubernetes target in Actions: install KUBE_CONFIG_DATA as ~/.kube/config, check access
	$(BIN)/mlops kubeconfig

# A canary's steps go to SUMMARY_OUT, or in Actions to the job summary.
promote_summary = $(or $(SUMMARY_OUT),$(GITHUB_STEP_SUMMARY))

.PHONY: promote
promote: install ## Run the image that passed QA (or VERSION=n DIGEST=sha256:...) in production, as a canary with MLOPS_CANARY_STEPS; rolls back on failure
	$(BIN)/mlops promote $(version_arg) $(digest_arg) $(if $(promote_summary),--markdown "$(promote_summary)")

.PHONY: shadow
shadow: install ## Kubernetes: run the QA version (or VERSION=n) beside production on a copy of its traffic
	$(BIN)/mlops shadow $(version_arg)

.PHONY: shadow-report
shadow-report: install ## Compare the shadow with production over MLOPS_SHADOW_WINDOW (Prometheus); exit 4 if flagged
	$(BIN)/mlops shadow-report $(if $(promote_summary),--markdown "$(promote_summary)") $(ARGS)

.PHONY: shadow-stop
shadow-stop: install ## Stop copying production's traffic and remove the shadow
	$(BIN)/mlops shadow-stop

.PHONY: rollback
rollback: install ## Return production to the previously promoted version
	$(BIN)/mlops rollback

.PHONY: api-key
api-key: install ## Print a new random /score API key (stdout) and its id (stderr)
	@$(BIN)/mlops api-keys --new

.PHONY: api-keys
api-keys: install ## Show the key ids of STAGE=qa|production; SET=1 gives it MLOPS_API_KEYS now (rotation)
	$(BIN)/mlops api-keys --stage "$${STAGE:?set STAGE=qa or STAGE=production}" $(if $(SET),--set)

# Extra arguments for `mlops bench`, e.g. BENCH_ARGS="--requests 500".
BENCH_ARGS ?=

.PHONY: bench
bench: install ## Load-test the scoring service against mlflow models serve (same model)
	$(BIN)/mlops bench $(version_arg) $(BENCH_ARGS)

# Many models (one per partition; see README "Many models"). The example set is
# the synthetic sales forecast (MLOPS_MODEL=sales); MANY_MODEL names another.
MANY_MODEL ?= sales
MANY_DATA ?= data/sales
MANY_SCALE ?= --stores 100 --products 100 --rows 200

.PHONY: data-many
data-many: install ## Generate the many-models example dataset (MANY_SCALE, default 10,000 partitions x 200 rows) in MANY_DATA
	$(BIN)/python -m sales_forecast.generate $(MANY_SCALE) --out $(MANY_DATA)

.PHONY: train-many
train-many: install ## Train, gate and register a set: one model per partition (joblib here, Ray with RAY_ADDRESS)
	@test -d $(MANY_DATA) || MLOPS_MODEL=$(MANY_MODEL) $(BIN)/mlops data --out $(MANY_DATA)
	MLOPS_MODEL=$(MANY_MODEL) $(BIN)/mlops run --data $(MANY_DATA) \
		--json-out $(MLOPS_REPORTS_DIR)/train-many.json $(ARGS)

.PHONY: batch-score
batch-score: install ## Score MANY_DATA with the champion set (or VERSION=n), each partition by its model, into PREDICTIONS
	MLOPS_MODEL=$(MANY_MODEL) $(BIN)/mlops batch-score --data $(MANY_DATA) \
		--out $(or $(PREDICTIONS),predictions) $(version_arg) $(ARGS)

.PHONY: bench-many
bench-many: install ## Benchmark many models: train, cached re-run and batch scoring at MANY_SCALE (joblib, and Ray if installed)
	$(BIN)/python -m sales_forecast.generate $(MANY_SCALE) --out .cache/bench-many/data
	MLOPS_MODEL=$(MANY_MODEL) $(BIN)/python -m ml_service.many.bench --data .cache/bench-many/data \
		--work .cache/bench-many $(BENCH_ARGS)

.PHONY: summary
summary: install ## Render reports/pipeline.json as Markdown (SUMMARY_OUT) and step outputs (OUTPUTS_OUT)
	@$(BIN)/mlops summary $(if $(SUMMARY_OUT),--markdown "$(SUMMARY_OUT)") \
		$(if $(OUTPUTS_OUT),--outputs "$(OUTPUTS_OUT)") --json-in $(MLOPS_REPORTS_DIR)/pipeline.json

.PHONY: store-restore
store-restore: install ## Restore the embedded registry from the last mlflow-store artifact (Actions)
	$(BIN)/mlops store-restore

# Every workflow with a schedule; GitHub disables them after 60 idle days.
SCHEDULED_WORKFLOWS := $(sort $(notdir $(shell grep -l '^  schedule:' .github/workflows/*.yml)))
# The GitHub REST API (GITHUB_API_URL is set in Actions; a local stand-in under act).
github_api = curl -fsS --retry 2 -H "Authorization: Bearer $${GH_TOKEN:?set GH_TOKEN}" \
	-H "Accept: application/vnd.github+json" -H "X-GitHub-Api-Version: 2022-11-28" \
	"$${GITHUB_API_URL:-https://api.github.com}/repos/$${GITHUB_REPOSITORY:?set GITHUB_REPOSITORY}/$(1)"

.PHONY: keepalive
keepalive: ## Re-enable the scheduled workflows so their schedules survive 60 idle days (Actions)
	@for workflow in $(SCHEDULED_WORKFLOWS); do \
		state=$$($(call github_api,actions/workflows/$$workflow) | \
			python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])'); \
		if [ "$$state" = disabled_manually ]; then \
			echo "left $$workflow off: someone disabled it by hand"; continue; \
		fi; \
		$(call github_api,actions/workflows/$$workflow/enable) -X PUT; \
		echo "enabled $$workflow (was $$state)"; \
	done

.PHONY: drift
drift: install ## Compare the scoring log (MLOPS_SCORING_LOG_URI or _DIR, or STAGE=qa|production's) with the training data; exit 4 on drift
	$(BIN)/mlops drift $(if $(SUMMARY_OUT),--markdown "$(SUMMARY_OUT)") $(if $(STAGE),--stage $(STAGE)) \
		$(if $(OUTPUTS_OUT),--outputs "$(OUTPUTS_OUT)") $(ARGS)

.PHONY: collect
collect: install ## Join the scoring log with OUTCOMES=file.csv into a new dataset OUT=file.csv; KEY_IDS="id ..." keeps only those keys' rows
	$(BIN)/mlops collect --outcomes "$${OUTCOMES:?set OUTCOMES=ground-truth.csv}" \
		--out "$${OUT:?set OUT=new-dataset.csv}" $(foreach id,$(KEY_IDS),--api-key $(id)) $(ARGS)

.PHONY: trigger-retrain
trigger-retrain: ## Start the retrain workflow on this run's branch (Actions; needs GH_TOKEN with actions: write)
	@$(call github_api,actions/workflows/retrain.yml/dispatches) -X POST \
		-d "{\"ref\": \"$${GITHUB_REF_NAME:?set GITHUB_REF_NAME}\"}"
	@echo "started retrain.yml on $${GITHUB_REF_NAME}"

# The workflows on this machine: act runs their jobs here (host mode), the
# GitHub API they call is a local stand-in (infra/act/). EVENT is push,
# pull_request, workflow_dispatch or schedule; ACT_ARGS adds --var NAME=VALUE,
# --secret NAME=VALUE, --input NAME=VALUE; ACT_ACTIONS names an offline copy of
# the pinned actions (OWNER/REPO@SHA folders) where GitHub cannot be reached.
EVENT ?= push
WORKFLOW ?= build.yml
JOB ?=
ACT_ARGS ?=
ACT_ACTIONS ?=

.PHONY: act
act: install ## Run WORKFLOW (JOB, or every job EVENT starts) on this machine with act
	$(BIN)/python infra/act/run.py $(EVENT) --workflow $(WORKFLOW) $(if $(JOB),--job $(JOB)) \
		$(if $(ACT_ACTIONS),--actions $(ACT_ACTIONS)) $(ACT_ARGS)

.PHONY: workflows
workflows: install ## Run the four workflows under act as a fresh fork and as a configured repository (Docker, registry, cluster)
	MLOPS_RUN_WORKFLOWS=1 $(BIN)/pytest tests/act $(WORKFLOWS_ARGS)

# A local single-node Kubernetes for the Kubernetes deploy target and its tests
# (built once from Debian's source package, cached by a hash of the build script).
.PHONY: cluster-up
cluster-up: ## Start a local single-node Kubernetes (root, Docker); prints the KUBECONFIG to use
	infra/kubernetes/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local Kubernetes and remove its state (the build stays cached)
	infra/kubernetes/cluster-down.sh

# The Prometheus the canary analysis asks (MLOPS_PROMETHEUS_URL); a team's own
# needs the scrape job of infra/prometheus/scrape-scoring.yml.
.PHONY: prometheus
prometheus: ## Start a Prometheus on 127.0.0.1:9090 scraping the cluster's scoring pods (apt install prometheus)
	infra/prometheus/up.sh

.PHONY: prometheus-down
prometheus-down: ## Stop the Prometheus of `make prometheus`
	infra/prometheus/down.sh

.PHONY: status
status: install ## Show registered versions, aliases, metrics and running containers
	$(BIN)/mlops status

.PHONY: clean
clean: ## Remove caches, outputs and image contexts (keeps .venv and the .mlflow registry)
	rm -rf .cache reports outputs build .pytest_cache predictions
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
