# reposeal: `make demo` and `make test` work on a fresh Debian machine, as root, from a clean clone.
SHELL := /bin/bash
APT_PACKAGES := pacman-package-manager makepkg libarchive-tools gnupg gpgv zstd fakeroot sq softhsm2 bubblewrap git ansible-core ansible-lint \
  python3-venv python3-dev gcc pkg-config libalpm-dev libarchive-dev libcurl4-openssl-dev libgpgme-dev faketime \
  lrzip lzop ncompress lzip prometheus chromium chromium-driver nginx man-db aide rkhunter debsums
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: test demo demo-check deps apt venv lint typecheck unit bench clean wheel

deps: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: run as root (or install:$$missing)"; exit 6; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing reposeal with its test tools"
	@rm -f $(VENV)/.installed-*
	/usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

lint: deps
	$(VENV)/bin/ruff check src tests bench demo
	$(VENV)/bin/ruff format --check src tests bench demo
	cd deploy/ansible && ansible-playbook -i inventory.example.yml --syntax-check site.yml >/dev/null
	cd deploy/ansible && ansible-lint -q site.yml

typecheck: venv
	$(VENV)/bin/mypy --strict src

unit: deps
	$(VENV)/bin/pytest -n 2 tests

test: deps lint typecheck unit demo-check

# the demo as a test: it stops with an error unless every refusal it shows happens
demo-check: deps
	@echo "==> make demo (as a test; output in $(VENV)/demo.log)"
	@$(PY) demo/demo.py > $(VENV)/demo.log 2>&1 || { tail -60 $(VENV)/demo.log; exit 1; }
	@grep -A30 "refused, each as it must be" $(VENV)/demo.log

demo: deps
	$(PY) demo/demo.py

bench: deps
	$(PY) bench/db_bench.py

# what the ansible roles install (reposeal_wheel): dist/reposeal-VERSION-py3-none-any.whl
wheel: venv
	$(PY) -m pip wheel -q --no-deps -w dist .
	@ls dist/*.whl

clean:
	rm -rf $(VENV) demo-out bench-out dist build .pytest_cache .mypy_cache .ruff_cache .hypothesis
