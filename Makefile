# gpulens: `make run` (local stack on simulated or real GPUs) and `make test` work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-gpu bench soak readme lint venv prometheus clean dashboards alerts check-alerts grafana-schema k8s k8s-tools scaling

# Every extra the tests exercise. torch first, pinned: pip then keeps that CPU build instead of
# resolving `torch>=…` for kserve's extra to a multi-GB CUDA build.
EXTRAS ?= test,kserve,probe,modelserver,elk,dashboards
TORCH ?= torch==2.13.0

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's prometheus gives promtool (tests lint every exposition with it) and a real Prometheus
# for the integration tests. Installed when root and missing; otherwise the tests say what is missing.
prometheus:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null || ! command -v amtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null; \
	  else echo "prometheus/promtool missing: apt-get install prometheus prometheus-alertmanager (as root)"; fi; \
	fi

# The whole suite on 127.0.0.1 (`gpulens up`): model server, exporters, probe, Prometheus, Alertmanager, load.
# Flags pass through: make run ARGS='--fault xid79'.
run: $(STAMP) prometheus
	$(BIN)/gpulens up $(ARGS)

# k8s/ validation tools, each apart from .venv: checkov (heavy, conflicting pins) and hadolint in their own
# venv, and the CRD schemas (@kubernetes-models/*, TypeScript) from npm, pinned by tests/k8s/package-lock.json.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CRD_STAMP := tests/k8s/node_modules/.installed

$(CHECKOV_STAMP): tests/k8s/requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -r tests/k8s/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

$(CRD_STAMP): tests/k8s/package.json tests/k8s/package-lock.json
	cd tests/k8s && npm ci --no-audit --no-fund --loglevel=error
	touch $(CRD_STAMP)

k8s-tools: $(CHECKOV_STAMP) $(CRD_STAMP)

# Generated parts of k8s/ (PrometheusRule, dashboard ConfigMaps, Alertmanager Secret) from alerts/ and dashboards/.
k8s: $(STAMP)
	$(BIN)/python k8s/generate.py

# README "Scaling" figures from a live scrape of the simulated exporter.
scaling: $(STAMP)
	$(BIN)/python k8s/scaling.py --readme README.md

test: $(STAMP) prometheus grafana-schema k8s-tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# On a machine with an NVIDIA GPU and driver: real NVML, every family present or NotSupported.
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_real.py tests/probes/test_canary.py

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/gpu_exporter.py
	$(BIN)/python bench/logship.py
	$(BIN)/python bench/probe.py

soak: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/soak.py --minutes $${SOAK_MINUTES:-30}

lint: $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/ruff check gpulens exporters probes dashboards alerts elk tests bench k8s
	$(BIN)/mypy gpulens exporters probes dashboards alerts elk k8s

# Dashboards and alerts as code: regenerate the checked-in JSON and rule YAML (tests fail on drift).
dashboards: $(STAMP)
	$(BIN)/python -m gpulens.dashboards.build

alerts: $(STAMP)
	$(BIN)/python -m gpulens.alerts.build

# The real tools on the generated files: promtool check + unit tests, amtool config and every routing case.
check-alerts: $(STAMP) prometheus
	$(BIN)/python -m gpulens.alerts.build --check
	promtool check rules alerts/rules/*.yaml
	cd alerts/tests && promtool test rules *.yaml
	amtool check-config alerts/alertmanager.yml
	$(BIN)/python -c 'import yaml; [print(" ".join(c["receivers"]), *[f"{k}={v}" for k, v in c["labels"].items()]) for c in yaml.safe_load(open("alerts/alertmanager-routes.yaml"))]' | \
	  while read -r want labels; do \
	    amtool config routes test --config.file=alerts/alertmanager.yml --verify.receivers=$$want $$labels >/dev/null || { echo "route: $$labels -> want $$want"; exit 1; }; \
	  done
	@echo "alert routing: all cases pass"

# Grafana's published dashboard types (npm @grafana/schema), turned into JSON Schema once; the
# dashboard tests validate every generated dashboard against it.
GRAFANA_SCHEMA_DIR := .cache/grafana-schema
GRAFANA_SCHEMA := $(GRAFANA_SCHEMA_DIR)/dashboard.schema.json
grafana-schema: $(GRAFANA_SCHEMA)
$(GRAFANA_SCHEMA): dashboards/schema.sh
	dashboards/schema.sh $(GRAFANA_SCHEMA_DIR)

readme: $(STAMP)
	$(BIN)/python -m gpulens.docs README.md

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) tests/k8s/node_modules build *.egg-info
