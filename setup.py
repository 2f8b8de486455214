"""ament_python / pip build of featloc_ros.

``colcon build`` in a ROS 2 workspace and ``pip install -e .`` in a venv both use this file.
Runtime Python dependencies are pinned in requirements.txt (installed by ``make setup``); they are
not repeated in install_requires so that pip never resolves an unpinned (CUDA) torch.
"""

import os
from glob import glob

from setuptools import find_packages, setup

package_name = "featloc_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "benchmarks", "benchmarks.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
        # Shipped weights only: models/ablation/ holds benchmark-only weights and is not installed.
        ("share/" + package_name + "/models", [f for f in glob("models/*") if os.path.isfile(f)]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="featloc_ros maintainers",
    maintainer_email="maintainers@featloc.invalid",
    description="Visual localization in a prebuilt feature map, with a ROS 2 localizer node.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "featloc_localizer = featloc_ros.ros.localizer_node:main",
            "featloc_build_map = featloc_ros.mapping.cli:main",
            "featloc_demo = featloc_ros.demo.run_demo:main",
            "featloc_bag_player = featloc_ros.ros.bag_player:main",
            "featloc_train = featloc_ros.training.train:main",
        ],
    },
)
