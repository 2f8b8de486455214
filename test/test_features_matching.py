import cv2
import numpy as np
import pytest

from featloc_ros.features import Features, confs, create_extractor
from featloc_ros.matching import create_matcher, nearest_neighbor_match

from conftest import shared_dataset


def _photo():
    from skimage import data

    return data.astronaut()  # 512x512 RGB, public domain (bundled with scikit-image)


def _warp(img, H):
    return cv2.warpPerspective(img, H, (img.shape[1], img.shape[0]))


def _correct_ratio(f0, f1, m, H, thr=3.0):
    p0 = f0.keypoints[m.indices[:, 0]].astype(np.float64)
    p1 = f1.keypoints[m.indices[:, 1]].astype(np.float64)
    proj = cv2.perspectiveTransform(p0[None], H)[0]
    return float(np.mean(np.linalg.norm(proj - p1, axis=1) < thr))


@pytest.mark.parametrize("name", ["rootsift", "sift", "rootsift_fast"])
def test_registry_extractors_output_contract(name):
    feats = create_extractor(name)(_photo())
    n = len(feats)
    assert 100 < n <= confs[name]["max_keypoints"]
    assert feats.keypoints.shape == (n, 2) and feats.keypoints.dtype == np.float32
    assert feats.descriptors.shape == (n, 128) and feats.descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats.descriptors, axis=1), 1.0, atol=1e-4)
    assert feats.image_size == (512, 512)
    assert np.all(feats.keypoints >= -0.5) and np.all(feats.keypoints < 512)


def test_registry_errors():
    with pytest.raises(KeyError, match="unknown feature extractor configuration"):
        create_extractor("nope")
    with pytest.raises(ValueError, match="unknown configuration keys"):
        create_extractor({"name": "sift", "max_keypionts": 5})
    with pytest.raises(KeyError, match="unknown matcher configuration"):
        create_matcher("nope")


def test_rotation_30deg_matches_are_correct():
    img = _photo()
    H = np.vstack([cv2.getRotationMatrix2D((256, 256), 30, 0.9), [0, 0, 1]])
    ext, matcher = create_extractor("rootsift"), create_matcher("mnn_ratio")
    f0, f1 = ext(img), ext(_warp(img, H))
    m = matcher(f0, f1)
    assert len(m) > 200
    assert _correct_ratio(f0, f1, m, H) > 0.9


def test_keypoints_scaled_back_to_full_resolution():
    img = cv2.resize(_photo(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    H = np.diag([1.0, 1.0, 1.0])
    ext = create_extractor({"name": "sift", "resize_max": 512})
    f0, f1 = ext(img), create_extractor({"name": "sift", "resize_max": 1024})(img)
    m = create_matcher("mnn_ratio")(f0, f1)
    assert f0.image_size == (1024, 1024) and len(m) > 100
    assert _correct_ratio(f0, f1, m, H, thr=2.5) > 0.8


def test_nearest_neighbor_mutual_and_ratio():
    rng = np.random.default_rng(0)
    d0 = rng.normal(size=(50, 16)).astype(np.float32)
    d0 /= np.linalg.norm(d0, axis=1, keepdims=True)
    perm = rng.permutation(50)
    d1 = d0[perm] + 0.01 * rng.normal(size=(50, 16)).astype(np.float32)
    d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
    m = nearest_neighbor_match(d0, d1, ratio=0.8)
    assert len(m) == 50
    np.testing.assert_array_equal(perm[m.indices[:, 1]], m.indices[:, 0])
    # an ambiguous duplicate fails the ratio test
    d1b = np.vstack([d1, d1[:1]])
    m = nearest_neighbor_match(d0, d1b, ratio=0.8)
    assert perm[0] not in m.indices[:, 0]
    empty = Features(np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, 16), np.float32), (1, 1))
    assert len(create_matcher("mnn")(empty, empty)) == 0


def test_oxford_graf_homography_1_to_2():
    root = shared_dataset("oxford_graf")
    im1 = cv2.cvtColor(cv2.imread(str(root / "img1.ppm")), cv2.COLOR_BGR2RGB)
    im2 = cv2.cvtColor(cv2.imread(str(root / "img2.ppm")), cv2.COLOR_BGR2RGB)
    H = np.loadtxt(root / "H1to2p")
    ext = create_extractor("rootsift")
    f1, f2 = ext(im1), ext(im2)
    m = create_matcher("mnn_ratio")(f1, f2)
    assert len(m) > 300
    assert _correct_ratio(f1, f2, m, H) > 0.8
