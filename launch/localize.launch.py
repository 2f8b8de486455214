"""Launch the featloc localizer.

    ros2 launch featloc_ros localize.launch.py map:=/path/to/map
    ros2 launch featloc_ros localize.launch.py map:=/path/to/map image_topic:=/cam/image_raw \\
        camera_info_topic:=/cam/camera_info params_file:=/path/to/my_localizer.yaml use_sim_time:=true

Parameters come from ``params_file`` (default: the installed config/localizer.yaml); the launch
arguments map, image_topic, camera_info_topic and use_sim_time override it.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "featloc_ros"


def default_params_file() -> str:
    """share/featloc_ros/config/localizer.yaml of the installed package (source tree as a fallback)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        PackageNotFoundError, get_package_share_directory = LookupError, None
    if get_package_share_directory is not None:
        try:
            return os.path.join(get_package_share_directory(PACKAGE), "config", "localizer.yaml")
        except (PackageNotFoundError, LookupError, ValueError):
            pass
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "localizer.yaml")


def generate_launch_description():
    map_path = LaunchConfiguration("map")
    params_file = LaunchConfiguration("params_file")
    image_topic = LaunchConfiguration("image_topic")
    camera_info_topic = LaunchConfiguration("camera_info_topic")
    use_sim_time = LaunchConfiguration("use_sim_time")
    return LaunchDescription([
        DeclareLaunchArgument("map", description="Map directory built by featloc_build_map (required)."),
        DeclareLaunchArgument("params_file", default_value=default_params_file(),
                              description="YAML file with the featloc_localizer parameters."),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Image topic (overrides params_file). With image_transport "
                                          "'compressed' (set in params_file) use e.g. /camera/image_raw/compressed."),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                              description="CameraInfo topic (overrides params_file)."),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (e.g. when playing a bag with --clock)."),
        Node(
            package=PACKAGE,
            executable="featloc_localizer",
            name="featloc_localizer",
            output="screen",
            emulate_tty=True,
            parameters=[
                params_file,
                {
                    "map_path": ParameterValue(map_path, value_type=str),
                    "image_topic": ParameterValue(image_topic, value_type=str),
                    "camera_info_topic": ParameterValue(camera_info_topic, value_type=str),
                    "use_sim_time": ParameterValue(use_sim_time, value_type=bool),
                },
            ],
        ),
    ])
