"""Camera intrinsics shared by map building, localization and the ROS nodes.

Models follow COLMAP names so they can be handed to pycolmap unchanged:
``PINHOLE`` (fx, fy, cx, cy), ``OPENCV`` (fx, fy, cx, cy, k1, k2, p1, p2),
``FULL_OPENCV`` (fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6) and
``OPENCV_FISHEYE`` (fx, fy, cx, cy, k1, k2, k3, k4).
Pixel coordinates: origin at the centre of the top-left pixel (OpenCV / ROS CameraInfo convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_PARAMS = {"PINHOLE": 4, "OPENCV": 8, "FULL_OPENCV": 12, "OPENCV_FISHEYE": 8}


class InvalidCameraError(ValueError):
    """Camera intrinsics that cannot be used (zero/NaN focal length, bad size, unknown model)."""


@dataclass(frozen=True)
class Camera:
    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(float(p) for p in self.params))
        self.validate()

    def validate(self) -> None:
        if self.model not in NUM_PARAMS:
            raise InvalidCameraError(f"unsupported camera model {self.model!r}; known: {sorted(NUM_PARAMS)}")
        if len(self.params) != NUM_PARAMS[self.model]:
            raise InvalidCameraError(
                f"{self.model} needs {NUM_PARAMS[self.model]} parameters, got {len(self.params)}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise InvalidCameraError(f"invalid image size {self.width}x{self.height}")
        p = np.asarray(self.params)
        if not np.all(np.isfinite(p)):
            raise InvalidCameraError(f"non-finite intrinsics {list(self.params)}")
        fx, fy, cx, cy = p[:4]
        if fx <= 0 or fy <= 0:
            raise InvalidCameraError(f"focal length must be positive, got fx={fx} fy={fy}")
        if not (-self.width <= cx <= 2 * self.width and -self.height <= cy <= 2 * self.height):
            raise InvalidCameraError(f"principal point ({cx}, {cy}) far outside the {self.width}x{self.height} image")

    @property
    def K(self) -> np.ndarray:
        fx, fy, cx, cy = self.params[:4]
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    @property
    def distortion(self) -> np.ndarray:
        """Distortion coefficients in OpenCV order (empty for PINHOLE)."""
        return np.asarray(self.params[4:], dtype=np.float64)

    @classmethod
    def from_camera_info(cls, width: int, height: int, distortion_model: str, d, k) -> "Camera":
        """Build from the fields of a sensor_msgs/CameraInfo (raw image: K and D are used, not P)."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise InvalidCameraError(f"CameraInfo.k must have 9 values, got {k.size}")
        d = np.asarray(d, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(d)):
            raise InvalidCameraError(f"non-finite distortion {d.tolist()}")
        base = [k[0], k[4], k[2], k[5]]
        model_name = (distortion_model or "").lower()
        if d.size == 0 or not np.any(d):
            return cls("PINHOLE", int(width), int(height), tuple(base))
        if model_name in ("plumb_bob", "rational_polynomial"):
            dd = np.zeros(8)
            dd[: min(8, d.size)] = d[:8]
            if not np.any(dd[4:]):
                return cls("OPENCV", int(width), int(height), tuple(base + dd[:4].tolist()))
            return cls("FULL_OPENCV", int(width), int(height), tuple(base + dd.tolist()))
        if model_name == "equidistant":
            dd = np.zeros(4)
            dd[: min(4, d.size)] = d[:4]
            return cls("OPENCV_FISHEYE", int(width), int(height), tuple(base + dd.tolist()))
        raise InvalidCameraError(f"unsupported distortion model {distortion_model!r}")

    def to_dict(self) -> dict:
        return {"model": self.model, "width": int(self.width), "height": int(self.height),
                "params": list(self.params)}

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        return cls(str(d["model"]), int(d["width"]), int(d["height"]), tuple(d["params"]))

    def to_pycolmap(self):
        import pycolmap

        return pycolmap.Camera(model=self.model, width=int(self.width), height=int(self.height),
                               params=list(self.params))

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Project (N, 3) points in the camera optical frame to (N, 2) pixels (with distortion)."""
        return np.asarray(self.to_pycolmap().img_from_cam(
            np.ascontiguousarray(points_cam, dtype=np.float64), check_cheirality=False))
