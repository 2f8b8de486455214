"""featloc_ros: visual localization of a camera in a prebuilt map, with thin ROS 2 nodes.

The sub-packages ``geometry``, ``features``, ``matching``, ``retrieval``, ``mapping`` and
``localization`` form a pure-Python core that never imports ROS. ``ros`` holds the nodes.
"""

__version__ = "0.1.0"
