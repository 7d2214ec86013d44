# The two commands: `make demo` (lab + dashboard) and `make test` (the whole suite).
# Both set up what they need first (scripts/bootstrap.sh).
.PHONY: demo test setup lint

demo:
	@bash scripts/bootstrap.sh
	MSSP_HOME=$${MSSP_HOME:-$(CURDIR)/.demo} .venv/bin/mssp demo

test:
	@bash scripts/bootstrap.sh --with-postgres
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

setup:
	@bash scripts/bootstrap.sh --with-postgres

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
