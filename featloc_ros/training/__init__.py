"""Training of the models of featloc_ros.nn, config-driven and resumable (``train``), by task:

- ``descriptors``: FeatLocNet (keypoints, invariance-selected descriptors) on synthetic pairs from a permissively
  licensed corpus and procedural images (``data``), losses in ``losses`` (``descriptor_task``);
- ``matcher``: SparseMatcher on frozen FeatLoc features of the same pairs, ground truth from the homography
  (``matcher_data``, ``matcher_task``).

    python -m featloc_ros.training.train --config featloc_ros/training/configs/featloc_v4.yaml
    python -m featloc_ros.training.train --config featloc_ros/training/configs/matcher_v1.yaml

``from featloc_ros.training.train import load_config, train`` in Python. ``load_config``, ``full_config``
and ``run_training`` (= ``train.train``) are also re-exported here, lazily: importing this package stays
cheap and ``python -m featloc_ros.training.train`` does not find its module imported twice.
"""

import importlib

__all__ = ["full_config", "load_config", "run_training"]


def __getattr__(name):
    if name in __all__:
        module = importlib.import_module(".train", __name__)
        return module.train if name == "run_training" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
