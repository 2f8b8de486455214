"""The package builds the way ROS 2 users build it (colcon, ament_python) and installs its data files."""

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_format3_with_exec_depends():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "featloc_ros"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "nav_msgs", "std_msgs", "visualization_msgs",
            "diagnostic_msgs", "tf2_ros", "tf2_msgs", "launch_ros"} <= deps
    assert root.find("export/build_type").text == "ament_python"


def test_colcon_build_installs_scripts_launch_and_config(tmp_path):
    colcon = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    if not Path(colcon).exists():
        pytest.skip("colcon is not installed (pip install colcon-common-extensions)")
    src = tmp_path / "src" / "featloc_ros"
    src.parent.mkdir(parents=True)
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "demo_output", "*.egg-info", "build", "install", "log")
    shutil.copytree(ROOT, src, ignore=ignore)
    res = subprocess.run([colcon, "build", "--base-paths", "src"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    share = tmp_path / "install" / "featloc_ros" / "share" / "featloc_ros"
    assert (share / "launch" / "localize.launch.py").is_file()
    assert (share / "config" / "localizer.yaml").is_file()
    assert (share / "package.xml").is_file()
    assert (tmp_path / "install" / "featloc_ros" / "share" / "ament_index" / "resource_index" / "packages" /
            "featloc_ros").is_file()
    lib = tmp_path / "install" / "featloc_ros" / "lib" / "featloc_ros"
    assert {"featloc_localizer", "featloc_build_map"} <= {p.name for p in lib.iterdir()}
