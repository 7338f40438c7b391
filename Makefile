# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test check image install peers dockerd lint typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
		&& $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## The real peers, as root: skopeo, podman, buildah and docker for trying the registry, and
## the rest the tests drive (the Go registry, PostgreSQL, slapd, Swift, chromium, ...).
peers:
	bash scripts/install-peers.sh

## A private Docker engine (as the tests start one) until Ctrl-C; prints the DOCKER_HOST to export.
dockerd: install
	$(PY) scripts/dockerd.py

## Start the token server and the registry with embedded defaults (Ctrl-C stops both).
run: install
	$(PY) scripts/devstack.py

## A tiny image to push (var/image/oci for skopeo/podman, var/image/demo.tar for docker load).
image: install
	$(PY) scripts/make_image.py

## Install everything the tests need (Python packages, real peers), then run them all.
test: install peers lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider

## The edit loop: lint, types and every test that starts no real peer and no server process
## and takes seconds (neither `e2e`, `peers` nor `slow`; docs/development.md).
check: install lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider -m "not e2e and not peers and not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

bench: install peers
	$(PY) bench/token_bench.py
	$(PY) bench/blob_bench.py
	$(PY) bench/blob_bench.py --s3 --size 512MiB --repeat 4 --levels 16
	$(PY) bench/blob_bench.py --proxy

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
