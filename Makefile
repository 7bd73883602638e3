# The few commands people run. Each target that needs the virtualenv makes it first (scripts/venv is a no-op when it is
# current), so `make lint` or `make bench ARGS=--help` works on a fresh clone. Pass arguments with ARGS="...".
.PHONY: run test fast lint format bench image lock venv
ARGS ?=

run:
	./scripts/run $(ARGS)
test:
	./scripts/test $(ARGS)
fast:
	./scripts/fast $(ARGS)
venv:
	./scripts/venv dev
lint: venv
	.venv/bin/ruff format --check src tests bench scripts/mkdocs_hooks.py scripts/cross_compile.py hatch_build.py && .venv/bin/ruff check src tests bench scripts/mkdocs_hooks.py scripts/cross_compile.py hatch_build.py && .venv/bin/mypy && .venv/bin/lint-imports
format: venv
	.venv/bin/ruff format src tests bench scripts/mkdocs_hooks.py scripts/cross_compile.py hatch_build.py && .venv/bin/ruff check --fix src tests bench scripts/mkdocs_hooks.py scripts/cross_compile.py hatch_build.py
bench: venv
	.venv/bin/python bench/run.py $(ARGS)
image:
	./scripts/build-image tuco
lock:
	./scripts/lock
