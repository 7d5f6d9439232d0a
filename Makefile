# Two commands work on a fresh machine: `make demo` and `make test`. Each sets up .venv with
# exactly what it needs (torch only for training/export and the tests that exercise them).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
EI     := $(VENV)/bin/edge-inspect
DEMO   := .demo

.PHONY: demo test model demo-calibration bench clean

$(VENV)/.stamp-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu]'
	touch $@

$(VENV)/.stamp-train: $(VENV)/.stamp-base
	$(PY) -m pip install -q -e '.[cpu,train,camera,dev]'
	touch $@

# The main job on the embedded default: a fresh synthetic scan (boards never seen in training)
# replayed through the shipped demo model, verdicts compared with the ground truth, and a report
# page to open in a browser.
demo: $(VENV)/.stamp-base
	rm -rf $(DEMO)/scans $(DEMO)/records $(DEMO)/report
	$(EI) synth --out $(DEMO)/scans --boards 20 --seed 2024
	$(EI) replay $(DEMO)/scans/scan.png --config config/demo.yaml --out $(DEMO)/records --report $(DEMO)/report
	@echo "Open the report in a browser: file://$(abspath $(DEMO))/report/report.html"

test: $(VENV)/.stamp-train
	$(VENV)/bin/ruff check -q edge_inspect tests benchmarks
	$(PY) -m pytest -q

# Rebuilds the shipped demo model (engines/demo.onnx) from config/demo.yaml, then calibrates it.
model: $(VENV)/.stamp-train
	$(EI) synth --out $(DEMO)/train --boards 120 --defect-rate 0 --seed 1
	$(EI) synth --out $(DEMO)/train-hard --boards 120 --defect-rate 0 --seed 2 --style hard
	rm -rf $(DEMO)/model
	$(EI) train --config config/demo.yaml --data $(DEMO)/train $(DEMO)/train-hard --out $(DEMO)/model
	$(EI) export --model $(DEMO)/model/model.pt --out engines/demo.onnx --calibration calibration/current.yaml
	$(MAKE) demo-calibration

# Calibrates the shipped model on fresh good boards of both styles (at most 2 % false rejects
# with 95 % confidence) and 30 defect boards, as an operator would (a new version in
# calibration/, the old one in history/). Three scans per style: the boards of one scan share
# its belt, lamp and sensor, so one scan per style said too little about the next
# (benchmarks/RESULTS.md, issue 14).
demo-calibration: $(VENV)/.stamp-base
	$(EI) synth --out $(DEMO)/cal-good1 --boards 100 --defect-rate 0 --seed 4001
	$(EI) synth --out $(DEMO)/cal-good2 --boards 100 --defect-rate 0 --seed 4002 --style hard
	$(EI) synth --out $(DEMO)/cal-good3 --boards 100 --defect-rate 0 --seed 4004
	$(EI) synth --out $(DEMO)/cal-good4 --boards 100 --defect-rate 0 --seed 4005 --style hard
	$(EI) synth --out $(DEMO)/cal-good5 --boards 100 --defect-rate 0 --seed 4006
	$(EI) synth --out $(DEMO)/cal-good6 --boards 100 --defect-rate 0 --seed 4007 --style hard
	$(EI) synth --out $(DEMO)/cal-defect --boards 30 --defect-rate 1 --seed 4003 --style hard
	$(EI) calibrate --config config/demo.yaml --scans $(DEMO)/cal-good1 $(DEMO)/cal-good2 $(DEMO)/cal-good3 \
		$(DEMO)/cal-good4 $(DEMO)/cal-good5 $(DEMO)/cal-good6 \
		--defect-scans $(DEMO)/cal-defect --max-frr 0.02 --yes

bench: $(VENV)/.stamp-base
	$(EI) bench --config config/demo.yaml

clean:
	rm -rf $(VENV) $(DEMO) *.egg-info
