import cv2
import numpy as np
import pytest

from featloc_ros.geometry.image_codec import ImageDecodeError, decode_compressed_image, decode_raw_image


def _rgb(h=6, w=5):
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_rgb8_with_row_padding():
    img = _rgb()
    step = 5 * 3 + 7
    data = np.zeros((6, step), np.uint8)
    data[:, :15] = img.reshape(6, 15)
    np.testing.assert_array_equal(decode_raw_image("rgb8", 5, 6, step, data.tobytes()), img)


def test_bgr8_bgra8_mono8_mono16():
    img = _rgb()
    np.testing.assert_array_equal(decode_raw_image("bgr8", 5, 6, 15, img[:, :, ::-1].tobytes()), img)
    bgra = np.dstack([img[:, :, ::-1], np.full((6, 5), 255, np.uint8)])
    np.testing.assert_array_equal(decode_raw_image("bgra8", 5, 6, 20, bgra.tobytes()), img)
    gray = img[:, :, 0].copy()
    out = decode_raw_image("mono8", 5, 6, 5, gray.tobytes())
    assert out.shape == (6, 5, 3) and np.all(out[:, :, 1] == gray)
    g16 = gray.astype(np.uint16) * 256
    out = decode_raw_image("mono16", 5, 6, 10, g16.astype(">u2").tobytes(), is_bigendian=1)
    assert np.all(out[:, :, 0] == gray)


@pytest.mark.parametrize("args,msg", [
    (("yuv422", 5, 6, 10, b"\0" * 60), "unsupported image encoding"),
    (("rgb8", 5, 6, 15, b"\0" * 10), "expected 90"),
    (("rgb8", 5, 6, 3, b"\0" * 90), "smaller than a row"),
    (("rgb8", 0, 6, 15, b""), "invalid image size"),
])
def test_raw_errors(args, msg):
    with pytest.raises(ImageDecodeError, match=msg):
        decode_raw_image(*args)


def test_compressed_roundtrip_and_errors():
    img = _rgb(32, 40)
    ok, png = cv2.imencode(".png", img[:, :, ::-1])
    np.testing.assert_array_equal(decode_compressed_image("png", png.tobytes()), img)
    with pytest.raises(ImageDecodeError, match="could not decode"):
        decode_compressed_image("jpeg", b"not a jpeg at all")
    with pytest.raises(ImageDecodeError, match="no data"):
        decode_compressed_image("jpeg", b"")
