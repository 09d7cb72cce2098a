# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: install demo test lint unit bench chaos clean

install:
	@bash tools/install.sh

demo: install
	.venv/bin/emergency up

lint: install
	.venv/bin/ruff check command sensors dispatch tests bench chaos
	.venv/bin/mypy

unit: install
	.venv/bin/python -m pytest tests/unit -q

test: install lint
	cd frontend && npm test --silent
	.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15

# Benchmarks (bench/): never part of `make test`; results land in bench/results/.
# The bench extra (matplotlib for the charts, py-spy) is installed only when missing.
bench: install
	@.venv/bin/python -c 'import matplotlib' 2>/dev/null || .venv/bin/python -m pip install -q -e '.[test,bench]'
	.venv/bin/python -m bench

# Fault injection (chaos/): never part of `make test` (small versions of each case are);
# results land in chaos/results/. `python -m chaos --quick` is a short run.
chaos: install
	.venv/bin/python -m chaos

clean:
	rm -rf .venv frontend/node_modules
