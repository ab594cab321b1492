# Two commands (README): `make run` and `make test`. Both create .venv and install on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CORES ?= all

.PHONY: install run test lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	# the local CPU wheel first; constraints keep every later step from swapping it for a CUDA build
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e ".[dev]"
	# unimol-tools caps numpy<2.3 while the SLURM executor plugin needs numpy>=2.4.5: see docs/decisions.md
	$(PIP) install -c constraints.txt --no-deps unimol-tools==0.1.6
	touch $@

install: $(VENV)/.installed

run: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/snakemake --cores $(CORES)

# the 15 slowest tests are printed, so that a CI log says where its time went
# Two workers: the SLURM end-to-end test and the test workspace run side by side (tests/conftest.py groups them)
test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadgroup --no-loadscope-reorder --durations=15

lint: install
	$(VENV)/bin/ruff check src tests workflow benchmarks
	$(VENV)/bin/snakefmt --check Snakefile workflow
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results .snakemake
