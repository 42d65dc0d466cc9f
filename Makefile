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
# `make test` runs every test directory of the cloud on it (PG_TESTS: the store, orders, stock, catalog, jobs and
# leases, pushes, prices, alerts, marketplace pushes, 1C, reports, sellers, security and the manager UI);
# `make test-pg` adds the tests of other parts that start or open a cloud too (the link's cloud side, the
# adapters' tests that keep a cloud store, the whole-system runs: demo, several processes, kills).
PG_TESTS ?= tests/cloud tests/reports tests/pricing tests/alerts tests/onec tests/webhooks tests/security \
	tests/tenants tests/ui
PG_TESTS_ALL ?= $(PG_TESTS) tests/sitelink/test_store.py tests/sitelink/test_sqlite.py tests/sitelink/test_cli_status.py \
	tests/sitelink/test_bridge_config.py tests/marketplaces/test_cards_faults.py tests/marketplaces/test_mm_adapter.py \
	tests/marketplaces/test_mm_api_complete.py tests/marketplaces/test_ozon_prices_read.py \
	tests/marketplaces/test_ozon_totals.py tests/marketplaces/test_unit_economics_sandbox.py \
	tests/marketplaces/test_ym_prices_and_realization.py tests/integration tests/edge/test_systemd.py

# Tests run on TEST_WORKERS pytest-xdist workers (most of them wait on brokers, processes and browsers, not on the
# cores); TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)
	MARKETSYNC_TEST_PG=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PG_TESTS)

# every test that opens a cloud store, on PostgreSQL
test-pg: $(STAMP)
	MARKETSYNC_TEST_PG=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PG_TESTS_ALL)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
