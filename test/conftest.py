import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from featloc_ros.evaluation.datasets import shared_data_dir  # noqa: E402


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, or skip the test with the reason."""
    path = shared_data_dir() / name
    if not path.exists():
        pytest.skip(f"evaluation data {path} is not available (../shared/data exists only on development/CI machines)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _quiet_glog():
    os.environ.setdefault("GLOG_minloglevel", "1")
    yield


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory):
    """A small map built from 32 rendered frames of the demo room (320x240, known poses), plus
    query frames (image, camera, ground-truth pose) rendered along the query path."""
    from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics
    from featloc_ros.geometry import Camera
    from featloc_ros.mapping.builder import KeyframeInput, build_map

    scene = DemoScene()
    w, h = 320, 240
    K = demo_intrinsics(w, h)
    cam = Camera("PINHOLE", w, h, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    kfs = [KeyframeInput(f"kf{i:03d}.jpg", scene.render(T, K, w, h)[0], cam, T, i * 200_000_000)
           for i, T in enumerate(camera_path("mapping", 32))]
    out = tmp_path_factory.mktemp("maps") / "demo_small"
    vmap = build_map(kfs, out, features="rootsift_fast", progress=False)
    queries = [(scene.render(T, K, w, h)[0], cam, T) for T in camera_path("query", 6)]
    return {"map_dir": out, "map": vmap, "camera": cam, "queries": queries, "scene": scene, "K": K}
