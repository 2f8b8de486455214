"""VLAD codebook training (OpenCV k-means) and retrieval ranking."""

import numpy as np
import pytest

from featloc_ros.retrieval import VLAD, train_codebook


def _blobs(seed=0, per=200):
    rng = np.random.default_rng(seed)
    centres = np.eye(8, dtype=np.float32)[:4] * 5.0  # 4 well separated centres in 8-d
    return centres, np.concatenate([c + 0.05 * rng.standard_normal((per, 8)).astype(np.float32) for c in centres])


def test_codebook_finds_separated_clusters_and_is_seeded():
    centres, desc = _blobs()
    cb = train_codebook(desc, 4, seed=3)
    assert cb.shape == (4, 8) and cb.dtype == np.float32
    # every true centre has a codeword next to it
    assert np.linalg.norm(cb[:, None] - centres[None], axis=2).min(0).max() < 0.05
    np.testing.assert_array_equal(cb, train_codebook(desc, 4, seed=3))


def test_codebook_size_is_capped_by_the_data_and_bad_input_is_refused():
    _, desc = _blobs(per=10)  # 40 descriptors: at most 4 clusters
    assert train_codebook(desc, 128).shape == (4, 8)
    with pytest.raises(ValueError, match="num_clusters"):
        train_codebook(desc, 0)
    with pytest.raises(ValueError, match="N > 0"):
        train_codebook(np.zeros((0, 8), np.float32), 8)


def test_vlad_ranks_the_image_with_the_same_content_first():
    centres, desc = _blobs()
    vlad = VLAD(train_codebook(desc, 4))
    rng = np.random.default_rng(1)
    # three "keyframes" whose descriptors sit around different subsets of the codewords
    images = [np.concatenate([c + 0.3 * rng.standard_normal((50, 8)).astype(np.float32) for c in centres[list(s)]])
              for s in ((0, 1), (2, 3), (0, 3))]
    database = np.stack([vlad.describe(d) for d in images])
    query = images[1][rng.permutation(len(images[1]))[:60]] + 0.05 * rng.standard_normal((60, 8)).astype(np.float32)
    order, sims = vlad.rank(vlad.describe(query), database)
    assert order[0] == 1 and sims[0] > sims[1]


def test_default_codebook_size_keeps_the_global_descriptor_length():
    from featloc_ros.retrieval import default_num_clusters

    assert default_num_clusters(64) == 256 and default_num_clusters(128) == 128  # featloc columns, SIFT
    assert default_num_clusters(64) * 64 == default_num_clusters(128) * 128
