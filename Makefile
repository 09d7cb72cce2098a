# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: install demo test lint unit clean

install:
	@bash tools/install.sh

demo: install
	.venv/bin/emergency up

lint: install
	.venv/bin/ruff check command sensors dispatch tests
	.venv/bin/mypy

unit: install
	.venv/bin/python -m pytest tests/unit -q

test: install lint
	cd frontend && npm test --silent
	.venv/bin/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf .venv frontend/node_modules
