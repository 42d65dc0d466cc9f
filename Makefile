# Two commands: `make demo` (a whole seller's day) and `make test` (the whole suite).
# Both install what is missing first and are quick when everything is already there.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DURATION ?=

.PHONY: demo soak test test-pg install lint bench clean

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/marketsync demo $(if $(DURATION),--duration $(DURATION),)

# The demo under faults (kills, pauses, bad messages on the broker), then judged; DURATION= seconds (600).
soak: $(STAMP)
	$(BIN)/python -m pytest -q -m faults || [ $$? -eq 5 ]  # 5: none marked
	$(BIN)/marketsync soak --duration $(or $(DURATION),600)

# The cloud's tests a second time on PostgreSQL: a throwaway cluster started and removed by the run itself
# (tests/conftest.py, cloud_sync/pg_cluster.py); every cloud database a test opens is a fresh schema of it.
# `make test` runs the core of the cloud's store on it (the engine layer, schema, stock ledger, orders, oversell
# races, catalog, leases, stock pushes, alerts, marketplace pushes, prices) and every test of the 1C exchange,
# the reports, the sellers' isolation and security: ~5 min on 3 workers, so the whole run stays under 20 min
# (~16 on a quiet box); `make test-pg` runs every cloud-side directory on PostgreSQL (~15 min on 3 workers,
# 2 busy cores).
PG_TESTS ?= tests/cloud/test_pg.py tests/cloud/test_schema.py tests/cloud/test_stock.py tests/cloud/test_orders.py \
	tests/cloud/test_catalog.py tests/cloud/test_leases.py tests/cloud/test_push.py tests/cloud/test_never_oversells.py \
	tests/alerts tests/webhooks tests/pricing tests/onec tests/reports tests/tenants tests/security
PG_TESTS_ALL ?= tests/cloud tests/reports tests/pricing tests/alerts tests/onec tests/webhooks tests/security tests/tenants

# Tests run on TEST_WORKERS pytest-xdist workers (most of them wait on brokers, processes and browsers, not on the
# cores); TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)
	MARKETSYNC_TEST_PG=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PG_TESTS)

# every cloud-side test on PostgreSQL
test-pg: $(STAMP)
	MARKETSYNC_TEST_PG=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PG_TESTS_ALL)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
