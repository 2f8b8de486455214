"""OpenCV SIFT and RootSIFT (Arandjelovic & Zisserman 2012)."""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry.image_codec import to_gray
from .base import Extractor, Features


class SIFT(Extractor):
    default_conf = {
        "max_keypoints": 4096,  # keep the strongest N (by response); 0 keeps all
        "resize_max": 1024,  # longest image side used for detection; keypoints are scaled back
        "rootsift": True,  # Hellinger kernel: L1-normalise, sqrt, (then L2 norm is 1)
        "contrast_threshold": 0.01,
        "edge_threshold": 10,
        "n_octave_layers": 3,
        "upright": False,  # not used by OpenCV SIFT (orientation always estimated); kept for config parity
    }

    def __init__(self, conf=None):
        super().__init__(conf)
        c = self.conf
        self._sift = cv2.SIFT_create(nfeatures=0, nOctaveLayers=c["n_octave_layers"],
                                     contrastThreshold=c["contrast_threshold"], edgeThreshold=c["edge_threshold"])

    @property
    def descriptor_dim(self) -> int:
        return 128

    def _extract(self, image: np.ndarray) -> Features:
        gray = to_gray(image)
        h, w = gray.shape
        scale = 1.0
        rmax = self.conf["resize_max"]
        if rmax and max(h, w) > rmax:
            scale = rmax / max(h, w)
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        kps, desc = self._sift.detectAndCompute(gray, None)
        if desc is None or len(kps) == 0:
            return Features(np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                            np.zeros((0, 128), np.float32), (w, h))
        pts = np.array([k.pt for k in kps], dtype=np.float32)
        resp = np.array([k.response for k in kps], dtype=np.float32)
        order = np.argsort(-resp, kind="stable")
        if self.conf["max_keypoints"]:
            order = order[: self.conf["max_keypoints"]]
        pts, resp, desc = pts[order], resp[order], desc[order].astype(np.float32)
        if self.conf["rootsift"]:
            desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-8)
            desc = np.sqrt(desc)
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-8)
        # OpenCV pixel centres are at integer coordinates at every scale: map back consistently.
        pts = (pts + 0.5) / scale - 0.5
        return Features(pts.astype(np.float32), resp, desc.astype(np.float32), (w, h))
