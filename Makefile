# Every target sets up what it needs from nothing: the venv, pip packages, Debian packages.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# chromium: the status page is tested in headless Chromium (a screenshot and the DOM against the API).
# wrk: the remediator benchmark's load generator (its smoke run is part of the tests).
DEBIAN_PACKAGES := prometheus prometheus-alertmanager docker-compose chromium wrk

.PHONY: all venv deps lint test demo bench k8s-bins cluster cluster-down alerts dashboards podresources-stubs clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

# Debian packages for the real tools the tests run (promtool, prometheus, ...). The guard keeps
# apt from starting their system services: we start our own instances on 127.0.0.1 only.
deps:
	@missing=(); for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing+=($$p); done; \
	if (( $${#missing[@]} )); then \
	  echo "installing Debian packages: $${missing[*]}"; \
	  guard=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; $(SUDO) chmod +x /usr/sbin/policy-rc.d; guard=1; fi; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $${missing[@]} >/dev/null; rc=$$?; \
	  if (( guard )); then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; exit $$rc; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: venv deps k8s-bins
	$(VENV)/bin/pytest

demo: venv deps k8s-bins
	$(PY) scripts/demo.py $(DEMO_ARGS)

bench: venv deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# The local Kubernetes control plane's binaries, built from the Go module proxy and cached under
# ~/.cache/vigil/k8s/<version>/ (cold: about 7 minutes on 2 cores; warm: nothing to do).
k8s-bins:
	scripts/k8s-bins.sh

NODES ?= 4
CLUSTER_DIR ?= .local
# A persistent local cluster: NODES simulated 8-GPU nodes, kubeconfig at $(CLUSTER_DIR)/kubeconfig.
# Safe to repeat: a running cluster is reused, what a dead one left is removed first.
cluster: venv k8s-bins
	$(PY) -m tests.k8s up --nodes $(NODES) --dir $(CLUSTER_DIR)

cluster-down: venv
	$(PY) -m tests.k8s down --dir $(CLUSTER_DIR)

# Rule files, PrometheusRule, promtool unit tests and runbooks from alerts/generate.py.
alerts: venv
	$(PY) -m alerts.generate

# The kubelet PodResources v1 stubs (exporters/gpu/podresources/v1) from the vendored proto.
podresources-stubs: venv
	$(PY) scripts/podresources_stubs.py

# Grafana dashboards (dashboards/json, dashboards/export) and provisioning from dashboards/build.py.
dashboards: venv
	$(PY) -m dashboards.build
