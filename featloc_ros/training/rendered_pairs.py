"""Non-planar training pairs for the matcher: two views of a textured room with boxes and pillars
(``featloc_ros.demo.scene.DemoScene``), rendered with depth, and exact correspondences from depth and poses.

The rooms are textured with photos of the training corpus (or procedural images without one), never with the
demo's own scikit-image textures, so the demo benchmarks see rooms the matcher was not trained on. Each room is
built once per dataset from a seeded random subset of the images.

A sample (``RenderedPairs()[i]``, deterministic in (seed, i)):

    A, B          (S,S) uint8 grey renders of two cameras in the same room (B possibly rolled, at night)
    depth_A/B     (S,S) float32 depth along the optical axis (metres)
    K             (3,3) intrinsics (both views); T_A, T_B (4,4) camera-to-room poses (optical frame)
    night         B rendered with the night lighting (dark, warm lamp, blur, noise)

``project(points, depth_src, T_src, T_dst, K, depth_dst)`` maps pixels of one view into the other and says
which are visible there (in the image and not occluded: the depth of the other view at the projection agrees).
"""

from __future__ import annotations

import numpy as np

DEFAULT_RENDER_CONF = {
    "scenes": 3,  # rooms, each textured with its own random subset of the images
    "images_per_scene": 40,
    "texture_ppm": 120.0,  # texture resolution (pixels per metre); the views are small
    "hfov_deg": 70.0,
    "baseline_m": [0.1, 0.8],  # distance between the two camera centres
    "yaw_deg": 30.0,  # heading difference up to (uniform, random sign)
    "pitch_deg": 12.0,  # pitch of each camera up to (uniform, random sign)
    "p_roll": 0.5,  # probability that B is rolled about its optical axis ...
    "roll_deg": 180.0,  # ... by up to this angle
    "p_night": 0.3,  # probability that B is rendered with the night lighting
    "min_covisible": 0.3,  # share of a grid of A's pixels that must be visible in B
    "max_tries": 30,  # camera pairs drawn before giving up on the covisibility (then the last one is used)
    "depth_tolerance": 0.03,  # relative depth difference below which a projected point counts as visible
}


def project(points: np.ndarray, depth_src: np.ndarray, T_src: np.ndarray, T_dst: np.ndarray, K: np.ndarray,
            depth_dst: np.ndarray | None, tolerance: float = 0.03,
            dst_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N,2) of the source view -> their pixels (N,2) in the destination view and a visibility mask (N,):
    3D point from the source depth at the nearest pixel, in front of the destination camera, inside its image and
    not occluded there (|depth_dst at the projection - its depth| < tolerance * depth). depth_dst None: no
    occlusion test (the destination image size is then ``dst_shape``, default the source's)."""
    h, w = depth_src.shape
    ij = np.clip(np.rint(points).astype(np.int64), 0, [w - 1, h - 1])
    z = depth_src[ij[:, 1], ij[:, 0]].astype(np.float64)
    rays = np.linalg.solve(K, np.c_[points, np.ones(len(points))].T).T  # (N,3) with z = 1
    X = (T_src[:3, :3] @ (rays * z[:, None]).T).T + T_src[:3, 3]  # room frame
    R, t = T_dst[:3, :3], T_dst[:3, 3]
    Xd = (R.T @ (X - t).T).T
    zd = Xd[:, 2]
    front = (zd > 1e-6) & np.isfinite(z) & (z > 0)
    uv = (K @ Xd.T).T
    p = uv[:, :2] / np.where(front, uv[:, 2], 1.0)[:, None]
    hd, wd = depth_dst.shape if depth_dst is not None else (dst_shape or depth_src.shape)
    inside = front & (p[:, 0] > -0.5) & (p[:, 0] < wd - 0.5) & (p[:, 1] > -0.5) & (p[:, 1] < hd - 0.5)
    if depth_dst is None:
        return p.astype(np.float32), inside
    q = np.clip(np.rint(p).astype(np.int64), 0, [wd - 1, hd - 1])
    seen = depth_dst[q[:, 1], q[:, 0]]
    visible = inside & (np.abs(seen - zd) < tolerance * np.maximum(zd, 1e-6))
    return p.astype(np.float32), visible


class RenderedPairs:
    """``pairs[i]`` -> a rendered pair (module docstring); ``size`` is the side S of the square views."""

    def __init__(self, conf: dict | None, images: list[np.ndarray], size: int, seed: int = 0):
        unknown = set(conf or {}) - set(DEFAULT_RENDER_CONF)
        if unknown:
            raise ValueError(f"rendered pairs: unknown configuration keys {sorted(unknown)}")
        self.conf = {**DEFAULT_RENDER_CONF, **(conf or {})}
        self.images, self.size, self.seed = images, int(size), int(seed)
        self._scenes: dict[int, object] = {}

    def scene(self, k: int):
        """Room k (built on first use: a seeded subset of the images, or procedural images without any)."""
        if k not in self._scenes:
            from ..demo.scene import DemoScene
            from .data import PROCEDURAL_KINDS, procedural_image

            c = self.conf
            rng = np.random.default_rng([self.seed, 7919, k])
            n = int(c["images_per_scene"])
            if self.images:
                pick = rng.choice(len(self.images), size=min(n, len(self.images)), replace=False)
                textures = [self.images[i] for i in pick]
            else:
                textures = [procedural_image(PROCEDURAL_KINDS[i % len(PROCEDURAL_KINDS)], rng, 340) for i in range(n)]
            self._scenes[k] = DemoScene(texture_ppm=float(c["texture_ppm"]), seed=int(rng.integers(1 << 31)),
                                        texture_images=textures)
        return self._scenes[k]

    def _camera(self, scene, rng, position=None, yaw=None):
        from ..demo.scene import look_pose

        c = self.conf
        for _ in range(100):
            if position is None:
                p = rng.uniform(scene.room_min + [0.4, 0.4, 0.5], scene.room_max - [0.4, 0.4, 0.6])
            else:
                d = rng.normal(size=3)
                d[2] *= 0.3
                p = position + d / np.linalg.norm(d) * rng.uniform(*c["baseline_m"])
            if scene.clearance(p) > 0.25:
                break
        else:
            return None, None  # no free position (e.g. A close to a corner): the caller draws another pair
        heading = rng.uniform(-np.pi, np.pi) if yaw is None else yaw + np.deg2rad(rng.uniform(-1, 1) * c["yaw_deg"])
        pitch = np.deg2rad(rng.uniform(-1, 1) * c["pitch_deg"])
        roll = 0.0
        if yaw is not None and rng.uniform() < c["p_roll"]:
            roll = np.deg2rad(rng.uniform(-1, 1) * c["roll_deg"])
        return look_pose(p, heading, pitch, roll), heading

    def __getitem__(self, index: int) -> dict:
        from ..demo.scene import demo_intrinsics

        c = self.conf
        rng = np.random.default_rng([self.seed, 104729, int(index)])
        room = int(rng.integers(int(c["scenes"])))
        scene = self.scene(room)
        S = self.size
        K = demo_intrinsics(S, S, float(c["hfov_deg"]))
        g = (np.arange(8) + 0.5) * S / 8
        grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
        night = bool(rng.uniform() < c["p_night"])
        tries = 0
        while True:
            tries += 1
            T_A, yaw = self._camera(scene, rng)
            T_B, _ = self._camera(scene, rng, T_A[:3, 3], yaw)
            if T_B is None and tries < 100:
                continue
            if T_B is None:
                raise RuntimeError(f"rendered pairs: no camera pair with free space found in room {room}")
            rgb_A, depth_A = scene.render(T_A, K, S, S)
            # covisibility from A's depth alone (B's depth not rendered yet): in front of B and inside its image
            _, seen = project(grid, depth_A, T_A, T_B, K, None)
            if seen.mean() >= c["min_covisible"] or tries >= int(c["max_tries"]):
                break
        rgb_B, depth_B = scene.render(T_B, K, S, S, lighting="night" if night else "day",
                                      seed=int(rng.integers(1 << 31)))
        import cv2

        gray = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in (rgb_A, rgb_B)]
        return {"A": gray[0], "B": gray[1], "depth_A": depth_A, "depth_B": depth_B, "K": K, "T_A": T_A,
                "T_B": T_B, "night": night}
