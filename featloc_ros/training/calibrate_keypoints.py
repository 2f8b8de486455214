"""Measure a FeatLoc detector's systematic keypoint shift on training pairs, and store it with the weights.

    python -m featloc_ros.training.calibrate_keypoints --weights models/featloc_v4.pt \\
        --subpixel-temperature 0.1 [--score-blur-candidates 0 0.5 0.7 1 1.5] \\
        [--subpixel-temperature-candidates 0.02 0.03 0.04 0.05 0.1 0.2] \\
        [--refine-sigma-candidates 0 1.2 1.5 1.7 2 2.5] [--edge-ratio-candidates 0 3 5 10 20] \\
        [--pairs 150] [--seed 777] [--write]

Score blur (``--score-blur-candidates``): before the offset, each candidate sigma of the score-map blur
(FeatLocNet conf ``score_blur``) is run on training pairs with photometric changes (half of them night) and half
of them rotated; the candidate whose keypoints repeat best (mean over the photometric kinds none / illumination /
night of the fraction of A's keypoints with a keypoint of B within 1 px of their projection) is kept, and the
offset is measured with it. ``--score-blur-candidates`` with no values keeps the architecture file's blur.

Soft-argmax temperature (``--subpixel-temperature-candidates``): after the blur choice, each candidate
temperature of the 3x3 soft-argmax refinement gets its own offset and is scored by the same repeatability with
that offset applied; the best is kept. Given with no values: keep ``--subpixel-temperature``.

Keypoint refinement (``--refine-sigma-candidates``): after the offset, each candidate |LoG| scale of the
extractor's refinement (featloc_ros.features.keypoint_refinement; 0: none) gets its own offset (the refined
keypoints' shift, measured as below) and is scored by the same repeatability, now with the offsets applied; the
best is stored as ``keypoint_refinement`` in the architecture file. Off by default (tried, not shipped:
models/README.md, "Keypoint refinement").

Edge test (``--edge-ratio-candidates``): after the offset, each curvature ratio of SIFT's edge test on the score
maxima (FeatLocNet conf ``edge_ratio``; 0: none) is run on the same training pairs, with the offset applied, and
scored by what the homography benchmark measures: invariance-selected mutual NN, MAGSAC (3 px), AUC@3 of the
corner error, mean over none / illumination / night (the repeatability is reported beside it). The best is
stored as ``edge_ratio`` in the architecture file. Not run by default (tried, withdrawn: models/README.md, "Edge test").

A shift d that is the same in every image's own pixel frame cancels between two images related by a
translation, but not under rotation: with B = H(A), a keypoint at true position p is reported at p - d in
both images, so the residual r = H(pA) - pB of a correct pair is about (I - J) d, J = dH/dp at pA. Over
pairs turned by many angles, d is the least-squares solution of (J - I) d = -r.

The pairs are those of the descriptor training (training corpus + procedural images, training/data.py), each
with a large rotation and no photometric change; a keypoint of A counts when a keypoint of B lies within
``--match-px`` of its exact projection. With ``--write`` the offset and the refinement temperature go into the
weights' architecture file (``<weights>.model.json``, with the measurement under "keypoint_calibration") and the
ONNX model next to the weights is exported again with them. Never reads ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..evaluation.homography import project


def local_jacobians(H: np.ndarray, points: np.ndarray, eps: float = 0.5) -> np.ndarray:
    """(N,2) points -> (N,2,2) Jacobians of the homography H at them (central differences)."""
    jx = (project(H, points + [eps, 0.0]) - project(H, points - [eps, 0.0])) / (2 * eps)
    jy = (project(H, points + [0.0, eps]) - project(H, points - [0.0, eps])) / (2 * eps)
    return np.stack([jx, jy], axis=2)


def nearest_keypoints(points: np.ndarray, kpts_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point (M,2), the index of the nearest keypoint of B (N,2), N >= 1, and its distance: ((M,), (M,))."""
    d2 = ((points[:, None, :] - kpts_b[None, :, :]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    return nearest, np.sqrt(d2[np.arange(len(points)), nearest])


def offset_equations(H: np.ndarray, kpts_a: np.ndarray, kpts_b: np.ndarray, match_px: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Rows (J - I) and right-hand sides -r for the keypoints of A with a keypoint of B within match_px of
    their projection: ((2M, 2), (2M,))."""
    if len(kpts_a) == 0 or len(kpts_b) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    proj = project(H, kpts_a)
    nearest, dist = nearest_keypoints(proj, kpts_b)
    ok = dist < match_px
    residual = proj[ok] - kpts_b[nearest[ok]]
    rows = local_jacobians(H, kpts_a[ok]) - np.eye(2)
    return rows.reshape(-1, 2), -residual.reshape(-1)


def solve_offset(rows: np.ndarray, rhs: np.ndarray) -> dict:
    """Least-squares offset and its spread: {"offset": [dx, dy], "halves": [[..], [..]], "rms_before", "rms_after",
    "keypoint_pairs"}. The halves (first and second half of the equations) show how stable the estimate is."""
    if len(rhs) < 4:
        raise ValueError(f"keypoint calibration: only {len(rhs) // 2} matched keypoints, cannot estimate an offset")
    d = np.linalg.lstsq(rows, rhs, rcond=None)[0]
    half = len(rhs) // 4 * 2
    halves = [np.linalg.lstsq(r, b, rcond=None)[0] for r, b in ((rows[:half], rhs[:half]), (rows[half:], rhs[half:]))]
    return {"offset": [round(float(v), 4) for v in d], "halves": [[round(float(v), 4) for v in h] for h in halves],
            "rms_before": float(np.sqrt(np.mean(rhs ** 2))), "rms_after": float(np.sqrt(np.mean((rhs - rows @ d) ** 2))),
            "keypoint_pairs": int(len(rhs) // 2)}


SCORE_BLUR_CANDIDATES = (0.0, 0.5, 0.7, 1.0, 1.5)  # px; v4 keeps 1.0 (models/README.md)


def nearest_in_b(H: np.ndarray, kpts_a: np.ndarray, kpts_b: np.ndarray, inside_b: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The keypoints of A whose projection into B lands where B has content (``inside_b`` (H,W) bool), and the
    keypoint of B nearest to each projection: (indices into A (M,), indices into B (M,), distances (M,)); with no
    keypoint of B the indices into B are -1 and the distances inf."""
    proj = project(H, kpts_a) if len(kpts_a) else np.zeros((0, 2))
    h, w = inside_b.shape
    xy = np.round(proj).astype(int)
    ok = (xy >= 0).all(1) & (xy[:, 0] < w) & (xy[:, 1] < h)
    ok[ok] = inside_b[xy[ok, 1], xy[ok, 0]]
    ia = np.flatnonzero(ok)
    if len(kpts_b) == 0:
        return ia, np.full(len(ia), -1), np.full(len(ia), np.inf)
    ib, dist = nearest_keypoints(proj[ia], kpts_b)
    return ia, ib, dist


def nearest_distances(H: np.ndarray, kpts_a: np.ndarray, kpts_b: np.ndarray, inside_b: np.ndarray) -> np.ndarray:
    """Distance from the projection into B of each keypoint of A that lands where B has content (``inside_b``
    (H,W) bool) to the nearest keypoint of B (inf when B has none): (M,)."""
    return nearest_in_b(H, kpts_a, kpts_b, inside_b)[2]


def extractor(weights: Path, subpixel_temperature: float, score_blur: float | None, max_keypoints: int,
              keypoint_offset=(0.0, 0.0), refinement: dict | None = None, edge_ratio: float | None = None):
    """The FeatLoc extractor of ``weights`` with this refinement temperature, score blur and edge test (None: the
    architecture file's), network keypoint offset and keypoint refinement (None: none, whatever the file says)."""
    from ..features.featloc import FeatLoc

    model = {"subpixel_temperature": subpixel_temperature, "keypoint_offset": tuple(keypoint_offset)}
    if score_blur is not None:
        model["score_blur"] = score_blur
    if edge_ratio is not None:
        model["edge_ratio"] = edge_ratio
    return FeatLoc({"weights": str(weights), "max_keypoints": max_keypoints, "resize_max": 0, "model": model,
                    "refinement": refinement or {}})


def photometric_pairs(crop_size: int, seed: int):
    """The training pairs on which detector settings are scored: a third without photometric change, a third
    illumination, a third night; half of them rotated (training/data.py's PairDataset)."""
    from .data import PairDataset

    return PairDataset({"crop_size": crop_size, "p_rotation": 0.5, "p_illumination": 2 / 3, "night_fraction": 0.5},
                       seed)


def extracted_pairs(weights: Path, subpixel_temperature: float, score_blur: float | None, pairs: int, seed: int,
                    max_keypoints: int = 512, crop_size: int = 320, keypoint_offset=(0.0, 0.0),
                    refinement: dict | None = None, edge_ratio: float | None = None) -> list[tuple]:
    """The first ``pairs`` training pairs of ``photometric_pairs`` with the features of A and B:
    [(sample, features_A, features_B)]. The settings are those of ``extractor``."""
    ext = extractor(weights, subpixel_temperature, score_blur, max_keypoints, keypoint_offset, refinement,
                    edge_ratio)
    data = photometric_pairs(crop_size, seed)
    return [(s, ext(s["A"]), ext(s["B"])) for s in (data[i] for i in range(pairs))]


PHOTOMETRIC_KINDS = ("none", "illumination", "night")


def repeatability_of(extracted: list[tuple]) -> dict:
    """How well the detections of ``extracted_pairs`` repeat: {kind: {"pairs", "repeat_1px", "repeat_2px",
    "median_px"}} for kind in none / illumination / night / all, and "score": the mean of repeat_1px over the three
    kinds (those with pairs). median_px: over the keypoints repeated within 2 px."""
    dists: dict[str, list] = {k: [] for k in PHOTOMETRIC_KINDS}
    for s, fa, fb in extracted:
        dists[s["photometric"]].append(nearest_distances(s["H_AB"].astype(np.float64),
                                                         fa.keypoints.astype(np.float64),
                                                         fb.keypoints.astype(np.float64), s["valid_B"]))
    out: dict = {}
    for kind, ds in {**dists, "all": sum(dists.values(), [])}.items():
        d = np.concatenate(ds) if ds else np.zeros(0)
        near = d[d < 2]
        out[kind] = {"pairs": len(ds), "repeat_1px": float(np.mean(d < 1)) if len(d) else 0.0,
                     "repeat_2px": float(np.mean(d < 2)) if len(d) else 0.0,
                     "median_px": float(np.median(near)) if len(near) else float("nan")}
    out["score"] = float(np.mean([out[k]["repeat_1px"] for k in dists if dists[k]] or [0.0]))
    return out


def repeatability(weights: Path, subpixel_temperature: float, score_blur: float, pairs: int, seed: int,
                  max_keypoints: int = 512, crop_size: int = 320, keypoint_offset=(0.0, 0.0),
                  refinement: dict | None = None, edge_ratio: float | None = None) -> dict:
    """``repeatability_of`` the training pairs with photometric changes (half night, half rotated) detected with
    these settings (as ``extractor``)."""
    return repeatability_of(extracted_pairs(weights, subpixel_temperature, score_blur, pairs, seed, max_keypoints,
                                            crop_size, keypoint_offset, refinement, edge_ratio))


def choose_score_blur(weights: Path, subpixel_temperature: float, candidates: list[float], pairs: int, seed: int
                      ) -> dict:
    """Each candidate's ``repeatability`` and the best: {"score_blur", "candidates": {sigma: result}}."""
    if not candidates:
        raise ValueError("keypoint calibration: no score blur candidates")
    results = {str(c): repeatability(weights, subpixel_temperature, c, pairs, seed) for c in candidates}
    best = max(candidates, key=lambda c: results[str(c)]["score"])
    return {"score_blur": float(best), "candidates": results, "pairs": pairs, "seed": seed}


def calibrate(weights: Path, subpixel_temperature: float, pairs: int, seed: int, match_px: float = 2.0,
              max_keypoints: int = 512, crop_size: int = 320, score_blur: float | None = None,
              keypoint_offset=(0.0, 0.0), refinement: dict | None = None) -> dict:
    """The offset of the FeatLoc detector of ``weights`` (its architecture file, with this refinement
    temperature, this score blur (None: the file's), this network offset and keypoint refinement (None: none))
    on ``pairs`` rotated training pairs."""
    from .data import PairDataset

    ext = extractor(weights, subpixel_temperature, score_blur, max_keypoints, keypoint_offset, refinement)
    data = PairDataset({"crop_size": crop_size, "p_rotation": 1.0, "p_illumination": 0.0}, seed)
    rows, rhs = [], []
    for i in range(pairs):
        s = data[i]
        r, b = offset_equations(s["H_AB"], ext(s["A"]).keypoints.astype(np.float64),
                                ext(s["B"]).keypoints.astype(np.float64), match_px)
        rows.append(r)
        rhs.append(b)
    out = solve_offset(np.concatenate(rows), np.concatenate(rhs))
    sources = data.describe_sources()
    if sources.get("corpus"):  # the folder's name, not this machine's path
        sources["corpus"] = Path(sources["corpus"]).name
    out.update({"subpixel_temperature": subpixel_temperature, "score_blur": ext.net.conf["score_blur"], "pairs": pairs,
                "seed": seed, "match_px": match_px, "max_keypoints": max_keypoints, "crop_size": crop_size,
                "data": sources})
    return out


SUBPIXEL_TEMPERATURE_CANDIDATES = (0.02, 0.03, 0.04, 0.05, 0.1, 0.2)  # v4 keeps 0.04 (models/README.md)


def choose_subpixel_temperature(weights: Path, score_blur: float | None, candidates: list[float], pairs: int,
                                seed: int, match_px: float = 2.0) -> dict:
    """Each soft-argmax temperature of the sub-pixel refinement: its offset (``calibrate``, rotated pairs) and
    ``repeatability`` with that offset; the best repeatability score wins. {"subpixel_temperature",
    "candidates": {T: {"offset", "rms_after", "score", kind: {...}}}, "pairs", "seed"}, and "calibration": the
    winner's whole ``calibrate`` result (so that it is not measured twice)."""
    if not candidates or min(candidates) <= 0:
        raise ValueError(f"keypoint calibration: temperature candidates must be > 0, got {candidates}")
    results, calibrations = {}, {}
    for t in candidates:
        cal = calibrations[str(t)] = calibrate(weights, t, pairs, seed, match_px, score_blur=score_blur)
        results[str(t)] = {"offset": cal["offset"], "rms_after": cal["rms_after"],
                           **repeatability(weights, t, score_blur, pairs, seed, keypoint_offset=cal["offset"])}
    best = max(candidates, key=lambda t: results[str(t)]["score"])
    return {"subpixel_temperature": float(best), "candidates": results, "pairs": pairs, "seed": seed,
            "calibration": calibrations[str(best)]}


# px; 0: no refinement. The experiment of models/README.md ("Keypoint refinement") compared these; not shipped, so
# the command line's default is no refinement.
REFINE_SIGMA_CANDIDATES = (0.0, 1.2, 1.5, 1.7, 2.0, 2.5)


def choose_refinement(weights: Path, subpixel_temperature: float, score_blur: float | None, keypoint_offset,
                      candidates: list[float], pairs: int, seed: int, radius: int = 1) -> dict:
    """Each |LoG| scale of the keypoint refinement (0: none), after the network offset ``keypoint_offset``: the
    offset of the refined keypoints (``calibrate``, rotated pairs) and ``repeatability`` with it; the candidate
    with the best repeatability score wins. {"settings": {"log_sigma", "radius", "offset"}, "candidates":
    {sigma: {"offset", "rms_after", "score", kind: {...}}}, "pairs", "seed"}."""
    from ..features.keypoint_refinement import refinement_settings

    if not candidates:
        raise ValueError("keypoint calibration: no refinement candidates")
    results, settings = {}, {}
    for sigma in candidates:
        ref, rms = {}, None
        if sigma > 0:
            ref = {"log_sigma": float(sigma), "radius": radius}
            cal = calibrate(weights, subpixel_temperature, pairs, seed, score_blur=score_blur,
                            keypoint_offset=keypoint_offset, refinement=ref)
            ref["offset"], rms = cal["offset"], cal["rms_after"]
        settings[str(sigma)] = refinement_settings(ref)
        rep = repeatability(weights, subpixel_temperature, score_blur, pairs, seed, keypoint_offset=keypoint_offset,
                            refinement=ref)
        results[str(sigma)] = {"offset": list(settings[str(sigma)]["offset"]), "rms_after": rms, **rep}
    best = max(candidates, key=lambda c: results[str(c)]["score"])
    chosen = settings[str(best)]
    return {"settings": {**chosen, "offset": list(chosen["offset"])}, "candidates": results, "pairs": pairs,
            "seed": seed}


def homography_accuracy_of(extracted: list[tuple], ransac_px: float = 3.0) -> dict:
    """What the homography benchmark measures, on ``extracted_pairs``: invariance-selected mutual NN matches, an
    OpenCV MAGSAC homography (``ransac_px``) and the mean error of the four crop corners.
    {kind: {"pairs", "auc_1px", "auc_3px", "median_corner_px"}} for kind in none / illumination / night / all, and
    "score": the mean of auc_3px over the three kinds (those with pairs)."""
    from ..evaluation.homography import auc, corner_error, estimate_homography
    from ..matching import create_matcher

    matcher = create_matcher("featloc_isnn")
    errors: dict[str, list] = {k: [] for k in PHOTOMETRIC_KINDS}
    for s, fa, fb in extracted:
        m = matcher(fa, fb).indices
        H = estimate_homography(fa.keypoints[m[:, 0]].astype(np.float64), fb.keypoints[m[:, 1]].astype(np.float64),
                                ransac_px)
        h, w = s["A"].shape[:2]
        errors[s["photometric"]].append(corner_error(H, s["H_AB"].astype(np.float64), w, h))
    out: dict = {}
    for kind, e in {**errors, "all": sum(errors.values(), [])}.items():
        out[kind] = {"pairs": len(e), "auc_1px": auc(e, 1.0) if e else 0.0, "auc_3px": auc(e, 3.0) if e else 0.0,
                     "median_corner_px": float(np.median(e)) if e else float("nan")}
    out["score"] = float(np.mean([out[k]["auc_3px"] for k in errors if errors[k]] or [0.0]))
    return out


EDGE_RATIO_CANDIDATES = (0.0, 3.0, 5.0, 10.0, 20.0)  # 0: no edge test; SIFT uses 10


def choose_edge_ratio(weights: Path, subpixel_temperature: float, score_blur: float | None, keypoint_offset,
                      candidates: list[float], pairs: int, seed: int) -> dict:
    """Each curvature ratio of the edge test (FeatLocNet conf ``edge_ratio``; 0: none), after the offset: its
    ``repeatability_of`` and ``homography_accuracy_of`` on the same extraction of the training pairs; the best
    homography score wins (the test trades a few repeated keypoints for more precise ones, which repeatability
    within 1 px does not see).
    {"edge_ratio", "candidates": {ratio: {"repeatability": {...}, "homography": {...}, "score"}}, "pairs",
    "seed"}. The offset is not measured again: the test only drops maxima, it does not move the others."""
    if not candidates or any(0 < c < 1 or c < 0 for c in candidates):
        raise ValueError(f"keypoint calibration: edge ratio candidates must be 0 (off) or >= 1, got {candidates}")
    results = {}
    for c in candidates:
        extracted = extracted_pairs(weights, subpixel_temperature, score_blur, pairs, seed,
                                    keypoint_offset=keypoint_offset, edge_ratio=c)  # one extraction, two scores
        rep, hom = repeatability_of(extracted), homography_accuracy_of(extracted)
        results[str(c)] = {"repeatability": rep, "homography": hom, "score": hom["score"]}
    best = max(candidates, key=lambda c: results[str(c)]["score"])
    return {"edge_ratio": float(best), "candidates": results, "pairs": pairs, "seed": seed}


def write_calibration(weights: Path, result: dict) -> dict:
    """Store the refinement temperature and offset (and the score blur and edge test when chosen) in
    ``<weights>.model.json`` and export the ONNX model next to the weights again (verified with onnxruntime). The
    file's records of earlier choices (``*_choice``) that ``result`` does not have are kept. Returns the ONNX
    check."""
    import torch

    from ..nn.architecture import architecture_path
    from ..nn.featloc_net import ARCHITECTURE_FORMAT, FeatLocNet, load_architecture
    from .descriptor_task import DEFAULT_EXPORT_CONF, DescriptorTask

    arch = {**load_architecture(weights), "subpixel_temperature": result["subpixel_temperature"],
            "keypoint_offset": result["offset"]}
    if "score_blur" in result:
        arch["score_blur"] = result["score_blur"]
    if "edge_ratio_choice" in result:
        arch["edge_ratio"] = result["edge_ratio_choice"]["edge_ratio"]
    path = architecture_path(weights)
    if path.is_file():  # the records of earlier choices that this run did not make again stay with the file
        earlier = json.loads(path.read_text()).get("keypoint_calibration", {})
        result = {**{k: v for k, v in earlier.items() if k.endswith("_choice")}, **result}
    data = {"format": ARCHITECTURE_FORMAT, "model": arch, "keypoint_calibration": result}
    if "refinement_choice" in result:
        data["keypoint_refinement"] = result["refinement_choice"]["settings"]
    path.write_text(json.dumps(data, indent=2) + "\n")
    net = FeatLocNet(arch)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    # the training export's settings (NMS radius, no threshold baked in: the extractor applies its own)
    return DescriptorTask.export_onnx(net.eval(), Path(weights).with_suffix(".onnx"), DEFAULT_EXPORT_CONF)


def print_candidates(label: str, candidates: dict) -> None:
    """One line per candidate: its repeatability score and, per photometric kind, repeat within 1 px / 2 px /
    median distance of the repeats."""
    for value, r in candidates.items():
        offset = f" offset {r['offset']}" if "offset" in r else ""
        print(f"{label} {value}: score {r['score']:.4f}{offset} " + " ".join(
            f"{k} {r[k]['repeat_1px']:.3f}/{r[k]['repeat_2px']:.3f}/{r[k]['median_px']:.3f}"
            for k in ("none", "illumination", "night")), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="FeatLoc state dict (its .model.json next to it)")
    p.add_argument("--subpixel-temperature", type=float, default=0.1,
                   help="soft-argmax temperature for the score blur choice, and kept when no temperature candidates "
                        "are given")
    p.add_argument("--score-blur-candidates", type=float, nargs="*", default=list(SCORE_BLUR_CANDIDATES),
                   help="score-map blur sigmas (px) to compare; the best by repeatability is kept (given with no "
                        "values: keep the architecture file's blur)")
    p.add_argument("--subpixel-temperature-candidates", type=float, nargs="*",
                   default=list(SUBPIXEL_TEMPERATURE_CANDIDATES),
                   help="soft-argmax temperatures to compare after the score blur choice, each with its own offset; the "
                        "best by repeatability is kept (given with no values: keep --subpixel-temperature)")
    p.add_argument("--refine-sigma-candidates", type=float, nargs="*", default=[],
                   help="|LoG| scales (px; 0: none) of the keypoint refinement to compare after the offset, e.g. "
                        f"{' '.join(f'{c:g}' for c in REFINE_SIGMA_CANDIDATES)}; the best by repeatability is kept "
                        "(default, or given with no values: no refinement)")
    p.add_argument("--edge-ratio-candidates", type=float, nargs="*", default=[],
                   help="curvature ratios of the edge test on the score maxima (0: none) to compare after the offset, "
                        f"e.g. {' '.join(f'{c:g}' for c in EDGE_RATIO_CANDIDATES)}; the best by homography AUC@3 on the "
                        "training pairs is kept (default, or given with no values: the architecture file's)")
    p.add_argument("--pairs", type=int, default=150)
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--match-px", type=float, default=2.0, help="a keypoint of B this close to the projection counts")
    p.add_argument("--write", action="store_true", help="store the result with the weights and re-export the ONNX")
    args = p.parse_args(argv)
    weights = Path(args.weights)
    if not weights.is_file():
        raise SystemExit(f"calibrate_keypoints: {weights} not found")
    blur = None
    if args.score_blur_candidates:
        choice = choose_score_blur(weights, args.subpixel_temperature, args.score_blur_candidates, args.pairs,
                                   args.seed)
        print_candidates("score_blur", choice["candidates"])
        blur = choice["score_blur"]
    if args.subpixel_temperature_candidates:
        t_choice = choose_subpixel_temperature(weights, blur, args.subpixel_temperature_candidates, args.pairs,
                                               args.seed, args.match_px)
        print_candidates("subpixel_temperature", t_choice["candidates"])
        temperature, result = t_choice["subpixel_temperature"], t_choice.pop("calibration")
        result["subpixel_temperature_choice"] = t_choice
    else:
        temperature = args.subpixel_temperature
        result = calibrate(weights, temperature, args.pairs, args.seed, args.match_px, score_blur=blur)
    if args.score_blur_candidates:
        result["score_blur_choice"] = choice
    if args.refine_sigma_candidates:
        refine = choose_refinement(weights, temperature, blur, result["offset"], args.refine_sigma_candidates,
                                   args.pairs, args.seed)
        print_candidates("refinement log_sigma", refine["candidates"])
        result["refinement_choice"] = refine
    if args.edge_ratio_candidates:
        edge = choose_edge_ratio(weights, temperature, blur, result["offset"], args.edge_ratio_candidates,
                                 args.pairs, args.seed)
        print_candidates("edge_ratio (repeatability)", {c: r["repeatability"] for c, r in edge["candidates"].items()})
        for c, r in edge["candidates"].items():
            hom = r["homography"]
            print(f"edge_ratio {c}: homography score (AUC@3) {r['score']:.4f} " + " ".join(
                f"{k} {hom[k]['auc_1px']:.3f}/{hom[k]['auc_3px']:.3f}/{hom[k]['median_corner_px']:.2f}"
                for k in ("none", "illumination", "night")), flush=True)
        result["edge_ratio_choice"] = edge
    print(json.dumps({k: result[k] for k in ("offset", "halves", "rms_before", "rms_after", "keypoint_pairs")}))
    if args.write:
        print(json.dumps(write_calibration(weights, result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
