# news-monitor: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint check clean install

# The venv is rebuilt whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Serves seeds/ on 127.0.0.1 and runs the daemon on config.example.yaml with a fresh
# demo database, printing every alert. Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/news-monitor demo --config config.example.yaml --fresh

test: $(STAMP)
	$(BIN)/ruff check monitor tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

check: $(STAMP)
	$(BIN)/news-monitor check --config config.example.yaml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache

# --- make install: the daemon as a system service -----------------------------------------
#   sudo make install                  # the news-monitor user (systemd-sysusers), a venv in
#                                      # /opt/news-monitor, /etc/news-monitor, the unit
#   make install DESTDIR=/tmp/stage    # a trial without root: the same tree under DESTDIR;
#                                      # no user is created, no ownership set, nothing
#                                      # outside DESTDIR is touched
# The config and the rules are copied only if absent: never overwritten. The unit is
# replaced (local changes belong in a drop-in: `systemctl edit news-monitor`).
# PREFIX          the venv (the unit's ExecStart= is rewritten to match)
# SERVICE_PYTHON  the Python the venv is made from (3.11+); it must live outside /home and
#                 /root, which the service cannot see (ProtectHome=yes)
# BINDIR          where a `news-monitor` link to the venv's command goes ("" for none)
# INSTALL_VENV=0  skip the venv (the files only; a DESTDIR venv runs only from DESTDIR)
DESTDIR ?=
PREFIX ?= /opt/news-monitor
BINDIR ?= /usr/local/bin
SERVICE_PYTHON ?= /usr/bin/python3
INSTALL_VENV ?= 1
UNITDIR ?= /etc/systemd/system
SYSUSERSDIR ?= /etc/sysusers.d
# Fixed: the unit names these (ConfigurationDirectory=, StateDirectory=, User=).
CONFDIR := /etc/news-monitor
STATEDIR := /var/lib/news-monitor
SERVICE_USER := news-monitor
# root:news-monitor on a real install; a DESTDIR trial keeps the invoking user's.
OWNER := $(if $(DESTDIR),,-o root -g $(SERVICE_USER))
VENV_PIP := $(DESTDIR)$(PREFIX)/bin/pip

install:
ifeq ($(DESTDIR),)
	@test "$$(id -u)" = 0 || { echo "make install: run it as root (sudo make install)," \
	  "or try it without root: make install DESTDIR=/tmp/stage" >&2; exit 1; }
endif
ifneq ($(INSTALL_VENV),0)
	@exe=$$($(SERVICE_PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))') \
	  || { echo "make install: cannot run $(SERVICE_PYTHON)" >&2; exit 1; }; \
	case "$$exe" in /home/*|/root/*) \
	  echo "make install: $(SERVICE_PYTHON) is $$exe, under /home or /root, hidden from" \
	    "the service (ProtectHome=yes); pass SERVICE_PYTHON=/usr/bin/python3.11 or so" >&2; \
	  exit 1;; esac
	@$(SERVICE_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "make install: $(SERVICE_PYTHON) is older than Python 3.11" >&2; exit 1; }
endif
	install -D -m 0644 systemd/news-monitor.sysusers \
	  $(DESTDIR)$(SYSUSERSDIR)/news-monitor.conf
ifeq ($(DESTDIR),)
	if command -v systemd-sysusers >/dev/null; then \
	  systemd-sysusers $(SYSUSERSDIR)/news-monitor.conf; \
	else \
	  getent passwd $(SERVICE_USER) >/dev/null || useradd --system --user-group \
	    --home-dir $(STATEDIR) --shell /usr/sbin/nologin $(SERVICE_USER); \
	fi
else
	@echo "DESTDIR set: the user $(SERVICE_USER) is not created, ownership is not set."
endif
ifneq ($(INSTALL_VENV),0)
	$(SERVICE_PYTHON) -m venv $(DESTDIR)$(PREFIX)
# A wheel built from a copy of this checkout, so no build files land in the tree; the
# second pip replaces an installed news-monitor of the same version.
	stage=$$(mktemp -d) && trap 'rm -rf "$$stage"' EXIT && \
	  cp -R pyproject.toml README.md monitor "$$stage"/ && \
	  find "$$stage" -name __pycache__ -prune -exec rm -rf {} + && \
	  $(VENV_PIP) wheel --quiet --no-deps --wheel-dir "$$stage/dist" "$$stage" && \
	  $(VENV_PIP) install --quiet "$$stage"/dist/*.whl && \
	  $(VENV_PIP) install --quiet --no-deps --force-reinstall "$$stage"/dist/*.whl
endif
	install -d -m 0750 $(OWNER) $(DESTDIR)$(CONFDIR)
	install -d -m 0700 $(DESTDIR)$(CONFDIR)/credentials
	@if [ -e $(DESTDIR)$(CONFDIR)/config.yaml ]; then \
	  echo "kept $(CONFDIR)/config.yaml (exists)"; \
	else \
	  echo "install systemd/config.yaml -> $(CONFDIR)/config.yaml"; \
	  install -m 0640 $(OWNER) systemd/config.yaml $(DESTDIR)$(CONFDIR)/config.yaml; \
	fi
	@if [ -e $(DESTDIR)$(CONFDIR)/rules ]; then \
	  echo "kept $(CONFDIR)/rules/ (exists)"; \
	else \
	  echo "install rules/*.yaml -> $(CONFDIR)/rules/"; \
	  install -d -m 0750 $(OWNER) $(DESTDIR)$(CONFDIR)/rules && \
	  install -m 0640 $(OWNER) rules/*.yaml $(DESTDIR)$(CONFDIR)/rules/; \
	fi
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/opt/news-monitor/bin/|$(PREFIX)/bin/|g' systemd/news-monitor.service \
	  > $(DESTDIR)$(UNITDIR)/news-monitor.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/news-monitor.service
ifneq ($(BINDIR),)
	install -d $(DESTDIR)$(BINDIR)
	@if [ -e $(DESTDIR)$(BINDIR)/news-monitor ] && [ ! -L $(DESTDIR)$(BINDIR)/news-monitor ]; \
	then \
	  echo "kept $(BINDIR)/news-monitor (not a link: remove it to link $(PREFIX)/bin/)"; \
	else \
	  ln -sfn $(PREFIX)/bin/news-monitor $(DESTDIR)$(BINDIR)/news-monitor; \
	fi
endif
	@echo
	@echo "Installed$(if $(DESTDIR), under $(DESTDIR),). Edit $(CONFDIR)/config.yaml" \
	  "(feeds, channels; secrets: systemd/README.md), then:"
	@echo "  systemctl daemon-reload && systemctl enable --now news-monitor"
