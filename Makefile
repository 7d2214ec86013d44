# The two commands: `make demo` (lab + dashboard) and `make test` (the whole suite).
# Both set up what they need first (scripts/bootstrap.sh).
.PHONY: demo test setup lint

demo:
	@bash scripts/bootstrap.sh
	MSSP_HOME=$${MSSP_HOME:-$(CURDIR)/.demo} .venv/bin/mssp demo

# make test: two workers for everything but the lab; then the lab tests in one process (the lab
# is one per machine, and xdist's loadgroup does not group with this pytest).
test:
	@bash scripts/bootstrap.sh --with-postgres
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q -n 2 --ignore=tests/integration $(PYTEST_ARGS)
	.venv/bin/python -m pytest -q tests/integration $(PYTEST_ARGS)

setup:
	@bash scripts/bootstrap.sh --with-postgres

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
