# featloc_ros developer Makefile.
#   make setup            create/refresh the venv (idempotent; fast no-op when up to date)
#   make setup VENV=/tmp/v  same, into another venv
#   make test             run the test suite (what .ci/run calls)
#   make demo             render a scene, build a map from a bag, replay it through the ROS 2 node
#   make bench            regenerate benchmarks/results/

PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.featloc_setup.stamp

.PHONY: setup test demo bench

setup: $(STAMP)

$(VPY):
	$(PYTHON) -m venv $(VENV)

# Re-run when the requirements, the tf2_msgs build script or the package metadata change.
# torch first, pinned (a local CPU wheel); never an unpinned torch.
$(STAMP): requirements.txt featloc_ros/tools/build_tf2_msgs.py $(wildcard setup.py setup.cfg pyproject.toml) | $(VPY)
	$(VPY) -m pip install --disable-pip-version-check torch==2.13.0
	$(VPY) -m pip install --disable-pip-version-check -r requirements.txt
	$(VPY) featloc_ros/tools/build_tf2_msgs.py --venv $(VENV)
	if [ -f setup.py ]; then $(VPY) -m pip install --disable-pip-version-check -e . --no-deps; fi
	touch $@

test: setup
	$(VPY) -m pytest -q -ra test

bench: setup
	cd benchmarks && $(abspath $(VPY)) fox_localization.py
	cd benchmarks && $(abspath $(VPY)) demo_localization.py

demo: setup
	$(VPY) -m featloc_ros.demo.run_demo
