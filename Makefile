.PHONY: run test lint bench image lock
run:
	./scripts/run
test:
	./scripts/test
lint:
	.venv/bin/ruff format --check src tests bench && .venv/bin/ruff check src tests bench && .venv/bin/mypy
bench:
	.venv/bin/python bench/run.py
image:
	./scripts/build-image tuco
lock:
	./scripts/lock
