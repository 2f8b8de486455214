# featloc_ros developer Makefile.
#   make setup            create/refresh the venv (idempotent; fast no-op when up to date)
#   make setup VENV=/tmp/v  same, into another venv
#   make test             run the test suite (what .ci/run calls)
#   make demo             render a scene, build a map from a bag, replay it through the ROS 2 node
#   make bench            regenerate benchmarks/results/ (make bench-quick: the CI-sized subset)
#   make weights          rebuild the shipped FeatLoc weights from nothing into runs/reproduce (v2 -> v3 -> v4 ->
#                         calibration -> v10, resumable) and compare them with models/
#   make peers            create/refresh .venv-peers: the pretrained peer methods (XFeat, ALIKED, DISK,
#                         LightGlue) for benchmarks/peers/, apart from the main venv (~6 GB, torch 2.14.1)

PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.featloc_setup.stamp

.PHONY: setup test demo bench bench-quick peers weights

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

weights: setup
	$(VPY) -m featloc_ros.training.reproduce --out runs/reproduce

# Full benchmarks (peers included when `make peers` was run; each script says what it skipped).
BENCH_PY := cd benchmarks && $(abspath $(VPY))
bench: setup
	$(BENCH_PY) homography_benchmark.py
	$(BENCH_PY) homography_benchmark.py --name featloc_ablation
	$(BENCH_PY) homography_benchmark.py --name featloc_matcher --max-keypoints 1024
	$(BENCH_PY) homography_benchmark.py --name featloc_matcher_v2 --max-keypoints 1024 --methods featloc+isnn featloc+sparse featloc+sparse_v2 featloc+sparse_v3 featloc+sparse_v3_exit featloc+sparse_small
	$(BENCH_PY) matcher_ablation.py
	$(BENCH_PY) outlier_analysis.py
	$(BENCH_PY) retrieval_benchmark.py
	$(BENCH_PY) shift_benchmark.py
	$(BENCH_PY) relative_pose_benchmark.py
	$(BENCH_PY) localization_benchmark.py --features rootsift sift featloc:featloc_isnn featloc:featloc_isnn_ratio featloc:featloc_isnn:featloc_isnn_ratio featloc:featloc_isnn:featloc_sparse featloc:featloc_sparse featloc:featloc_isnn:featloc_sparse_v3 featloc:featloc_isnn:featloc_sparse_small
	$(BENCH_PY) match_against_benchmark.py
	$(BENCH_PY) fox_localization.py
	$(BENCH_PY) demo_localization.py
	$(BENCH_PY) latency_benchmark.py
	$(BENCH_PY) onnx_spinning_benchmark.py

# CI-sized subset (a few minutes on 2 cores); writes benchmarks/results/*_quick.*
bench-quick: setup
	$(BENCH_PY) homography_benchmark.py --quick
	$(BENCH_PY) relative_pose_benchmark.py --quick
	$(BENCH_PY) localization_benchmark.py --quick
	$(BENCH_PY) retrieval_benchmark.py --quick --clusters 32 256
	$(BENCH_PY) latency_benchmark.py --quick

demo: setup
	$(VPY) -m featloc_ros.demo.run_demo

# Peer methods (benchmarks/peers/run_peer.py runs inside this venv; the main venv only talks to it through
# benchmarks/peers/client.py). torch/torchvision first, pinned (from this machine's local wheel index), then
# the peer packages and their real dependencies with --no-deps so that none of them can pull another torch.
PEERS_VENV  ?= .venv-peers
PEERS_PY    := $(PEERS_VENV)/bin/python
PEERS_STAMP := $(PEERS_VENV)/.featloc_peers.stamp

peers: $(PEERS_STAMP)

$(PEERS_PY):
	$(PYTHON) -m venv $(PEERS_VENV)

$(PEERS_STAMP): requirements-peers.txt | $(PEERS_PY)
	$(PEERS_PY) -m pip install --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PEERS_PY) -m pip install --disable-pip-version-check --no-deps -r requirements-peers.txt
	$(PEERS_PY) benchmarks/peers/run_peer.py --check
	touch $@
