# pgshift.aurora — every target bootstraps what it needs (tools/bootstrap.sh).
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
BIN := $(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
INVENTORY ?= inventories/lab/hosts.yml
PLAYBOOK := $(BIN)/ansible-playbook -i $(INVENTORY)
PYTEST := $(BIN)/python -m pytest

.PHONY: help bootstrap demo test unit integration molecule lint sanity lab-up lab-down bench clean

help:
	@echo "make demo    - bring the local lab up and run the migration phases on it"
	@echo "make test    - unit, integration, molecule, ansible-lint and ansible-test sanity"
	@echo "make lab-up / lab-down / lint / sanity / unit / integration / molecule / bench"

bootstrap: $(VENV)/.pgshift-requirements .build/collections/ansible_collections/pgshift/aurora

$(VENV)/.pgshift-requirements .build/collections/ansible_collections/pgshift/aurora: requirements.txt tools/bootstrap.sh
	VENV=$(VENV) ./tools/bootstrap.sh

demo: bootstrap
	./tools/demo.sh

test: bootstrap
	./tools/test.sh

unit: bootstrap
	$(PYTEST) tests/unit

integration: bootstrap
	$(PYTEST) tests/integration -n 2 --dist loadfile --no-loadscope-reorder

molecule: bootstrap
	./tools/molecule.sh

lint: bootstrap
	$(BIN)/ansible-lint

sanity: bootstrap
	./tools/sanity.sh

lab-up: bootstrap
	$(PLAYBOOK) playbooks/lab_up.yml

lab-down: bootstrap
	$(PLAYBOOK) playbooks/lab_down.yml

bench: bootstrap
	./tools/bench.sh

clean:
	rm -rf .build reports tests/output .pytest_cache
	rm -f bench/results/*.json bench/results/*.csv  # the tracked runs under bench/results/*/ stay
