"""Decode image message payloads (sensor_msgs Image / CompressedImage fields) into RGB arrays.

Kept free of ROS and cv_bridge: both the bag reader and the ROS node pass plain fields here.
"""

from __future__ import annotations

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """An image payload that cannot be turned into an RGB image."""


# encoding -> (channels, dtype, conversion to RGB or None)
_RAW_ENCODINGS = {
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8uc1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8uc3": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "16uc1": (1, np.uint16, cv2.COLOR_GRAY2RGB),
}

SUPPORTED_ENCODINGS = tuple(sorted(_RAW_ENCODINGS))


def decode_raw_image(encoding: str, width: int, height: int, step: int, data, is_bigendian: int = 0) -> np.ndarray:
    """Decode a sensor_msgs/Image payload to an (H, W, 3) uint8 RGB array."""
    enc = (encoding or "").lower()
    if enc not in _RAW_ENCODINGS:
        raise ImageDecodeError(f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, dtype, conversion = _RAW_ENCODINGS[enc]
    width, height, step = int(width), int(height), int(step)
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"invalid image size {width}x{height}")
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is smaller than a row ({row_bytes} bytes) for {enc} {width}x{height}")
    buf = np.frombuffer(memoryview(data), dtype=np.uint8)
    if buf.size < step * height:
        raise ImageDecodeError(f"image data has {buf.size} bytes, expected {step * height} for {enc} {width}x{height}")
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    pixel_dtype = np.dtype(dtype).newbyteorder(">" if is_bigendian else "<")
    img = np.ascontiguousarray(rows).view(pixel_dtype).reshape(height, width, channels)
    if dtype == np.uint16:
        img = (img.astype(np.float32) / 256.0).clip(0, 255).astype(np.uint8)
    if channels == 1:
        img = img[:, :, 0]
    return cv2.cvtColor(img, conversion) if conversion is not None else np.ascontiguousarray(img)


def decode_compressed_image(fmt: str, data) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage payload (jpeg/png) to an (H, W, 3) uint8 RGB array."""
    buf = np.frombuffer(memoryview(data), dtype=np.uint8)
    if buf.size == 0:
        raise ImageDecodeError("compressed image has no data")
    if "compressedDepth" in (fmt or ""):
        raise ImageDecodeError(f"compressed depth images are not colour images (format {fmt!r})")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError(f"could not decode compressed image (format {fmt!r}, {buf.size} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) or gray (H, W) uint8 -> gray (H, W) uint8."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    raise ImageDecodeError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
