from __future__ import annotations

import asyncio
import importlib
import importlib.util
import io
import struct
import threading
import time
import tracemalloc
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from helpline.core.errors import Invalid
from helpline.evidence import imaging
from helpline.evidence.imaging import (
    ImageRefused,
    PdqHash,
    hamming_distance,
    heic_supported,
    in_image_worker,
    pdq_hash,
    pdq_hex,
    preview,
    render_preview,
    video_placeholder,
)


def encode(image: Image.Image, format: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def synthetic(width: int = 320, height: int = 240, variant: int = 0) -> Image.Image:
    """A deterministic picture with structure at several scales, from arithmetic only (no
    drawing code whose rasterisation could change between Pillow versions)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = x / width, y / height
    if variant == 0:
        red = 128 + 100 * np.sin(6 * x + 3 * y)
        green = 128 + 100 * np.cos(9 * x * y + 2 * x)
        blue = 255 * ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05)
    else:
        red = 128 + 120 * np.cos(13 * y) * np.sin(4 * x)
        green = 255 * ((x + y) % 0.5 < 0.25)
        blue = 128 + 100 * np.sin(20 * x * x)
    pixels = np.clip(np.stack([red, green, blue], axis=2), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (8-bit RGB) but holds one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- PDQ


def reference_hex(bits_by_k: list[int]) -> str:
    """ThreatExchange's Hash256: setBit(k) sets bit k & 15 of word k >> 4; toHexString prints
    the words from 15 down to 0, four hex digits each."""
    words = [0] * 16
    for k, bit in enumerate(bits_by_k):
        if bit:
            words[k >> 4] |= 1 << (k & 15)
    return "".join(f"{words[i]:04x}" for i in range(15, -1, -1))


def test_pdq_hex_follows_the_reference_word_order() -> None:
    for k in (0, 1, 15, 16, 100, 240, 255):
        by_k = [0] * 256
        by_k[k] = 1
        vector = np.zeros(256, dtype=np.uint8)
        vector[255 - k] = 1  # pdqhash lists bit 255 first
        assert pdq_hex(vector) == reference_hex(by_k)
    assert reference_hex([1] + [0] * 255).endswith("0001")
    assert reference_hex([0] * 255 + [1]).startswith("8000")


# PDQ of synthetic() (320x240, lossless PNG), cross-checked below from the DCT coefficients
GOLDEN_PDQ = "b59ab592bdb87252729acd64ce684e76bdacbde452985294f2a80d56ae6d2281"


async def test_pdq_of_a_fixed_image_matches_bits_computed_independently() -> None:
    image = synthetic()
    result = await pdq_hash(encode(image))

    # From pdqhash's DCT output (before the median step), apply the reference's rule: bit
    # k = 16*i + j is set when coefficient (i, j) is above the median, then format as the
    # reference does. compute_float lists the 16x16 coefficients reversed.
    pdqhash: Any = importlib.import_module("pdqhash")  # untyped
    floats, quality = pdqhash.compute_float(np.asarray(image))
    coefficients = np.asarray(floats)[::-1].reshape(16, 16)
    median = np.median(coefficients)
    by_k = [int(coefficients[k >> 4][k & 15] > median) for k in range(256)]

    assert result == PdqHash(hex=reference_hex(by_k), quality=quality)
    assert len(result.hex) == 64 and result.hex == result.hex.lower()
    assert result.quality >= 50
    # the same value, pinned, so a change of library or convention cannot pass unnoticed
    assert result.hex == GOLDEN_PDQ


async def test_pdq_matches_a_resized_reencoded_copy_and_not_another_image() -> None:
    original = synthetic(640, 480)
    copy = original.resize((300, 225), Image.Resampling.BILINEAR)
    first = await pdq_hash(encode(original))
    second = await pdq_hash(encode(copy, "JPEG", quality=60))
    webp = await pdq_hash(encode(original, "WEBP", quality=50))
    unrelated = await pdq_hash(encode(synthetic(640, 480, variant=1)))

    assert hamming_distance(first.hex, second.hex) <= 31
    assert hamming_distance(first.hex, webp.hex) <= 31
    assert hamming_distance(first.hex, unrelated.hex) > 80


async def test_pdq_of_a_flat_image_has_quality_zero() -> None:
    result = await pdq_hash(encode(Image.new("RGB", (64, 64), (90, 90, 90))))
    assert result.quality < 50


async def test_pdq_takes_the_first_frame_and_odd_modes() -> None:
    base = await pdq_hash(encode(synthetic()))
    frames = [synthetic(), synthetic(variant=1)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert hamming_distance(base.hex, (await pdq_hash(animated)).hex) <= 31
    grey = await pdq_hash(encode(synthetic().convert("L")))
    rgba = await pdq_hash(encode(synthetic().convert("RGBA")))
    assert hamming_distance(base.hex, grey.hex) <= 31
    assert rgba.hex == base.hex


async def test_pdq_runs_in_a_bounded_worker() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    clock = asyncio.create_task(ticker())
    await asyncio.gather(*(in_image_worker(work) for _ in range(6)))
    clock.cancel()
    assert most == imaging.WORKERS == 2
    assert ticks > 10  # the event loop kept running


# ---------------------------------------------------------------- bombs and bad input


@pytest.mark.parametrize(
    ("width", "height"), [(30000, 30000), (25000, 10), (10, 20001), (8000, 7000)]
)
async def test_image_bombs_are_refused_from_the_header(width: int, height: int) -> None:
    data = png_header_only(width, height)
    tracemalloc.start()
    try:
        with pytest.raises(ImageRefused, match="too large"):
            preview(data)
        with pytest.raises(ImageRefused, match="too large"):
            await pdq_hash(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # nothing was decoded


def test_pillow_decompression_bomb_errors_become_refusals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(synthetic(100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels is over twice this
    with pytest.raises(ImageRefused, match="too large"):
        preview(data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 9000)  # between 1x and 2x: a warning
    with pytest.raises(ImageRefused, match="too large"):
        imaging.pdq_hash_sync(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        encode(synthetic(), "JPEG")[:300],  # truncated
        encode(synthetic(), "PNG")[:200],
        encode(synthetic(), "BMP"),  # a format Pillow reads but the helpline does not accept
        encode(synthetic(), "TIFF"),
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    ],
)
async def test_unreadable_or_unaccepted_images_are_refused(data: bytes) -> None:
    with pytest.raises(ImageRefused) as refused:
        preview(data)
    assert isinstance(refused.value, Invalid) and refused.value.code == "image_refused"
    with pytest.raises(ImageRefused):
        await pdq_hash(data)


# ---------------------------------------------------------------- previews


def exif_with_gps_and_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Victim's phone"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 5.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (4.0, 53.0, 36.0)
    return exif


def two_halves(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), (220, 20, 20))
    image.paste((20, 20, 220), (width // 2, 0, width, height))
    return image


def test_preview_drops_all_metadata_and_applies_orientation() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    original = encode(
        two_halves(400, 200),
        "JPEG",
        exif=exif_with_gps_and_orientation(6).tobytes(),
        icc_profile=icc,
        xmp=xmp,
        comment=b"taken at home",
    )
    with Image.open(io.BytesIO(original)) as check:  # the input really carries it all
        assert check.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert check.info.get("icc_profile") and check.info.get("xmp")

    result = preview(original, blur=False)

    for marker in (b"Exif", b"GPS", b"PhoneMaker", b"ICC_PROFILE", b"xmpmeta", b"taken at"):
        assert marker not in result
    with Image.open(io.BytesIO(result)) as shown:
        assert shown.format == "JPEG"
        assert not shown.getexif()
        assert not set(shown.info) & {"exif", "icc_profile", "xmp", "comment", "photoshop"}
        # orientation 6: the stored 400x200 picture is shown rotated a quarter turn clockwise,
        # so its left (red) half is on top
        assert shown.size == (200, 400)
        top, bottom = shown.getpixel((100, 50)), shown.getpixel((100, 350))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 150 and top[2] < 100
    assert bottom[2] > 150 and bottom[0] < 100


def high_frequency(data: bytes) -> float:
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    return float(np.abs(np.diff(pixels, axis=1)).mean() + np.abs(np.diff(pixels, axis=0)).mean())


def test_preview_is_blurred_by_default() -> None:
    rng = np.random.default_rng(1)
    noisy = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), "RGB")
    detailed = np.asarray(synthetic(400, 300)).copy()
    detailed[::8, :, :] = 0  # fine lines
    for image in (noisy, Image.fromarray(detailed, "RGB")):
        data = encode(image)
        sharp, blurred = preview(data, blur=False), preview(data)
        assert high_frequency(blurred) < high_frequency(sharp) / 5
        with Image.open(io.BytesIO(blurred)) as shown:
            variance = np.asarray(shown.convert("L"), dtype=np.float64).var()
        with Image.open(io.BytesIO(sharp)) as shown:
            assert variance < np.asarray(shown.convert("L"), dtype=np.float64).var()


def test_preview_is_downscaled() -> None:
    data = encode(synthetic(2400, 1200), "JPEG", quality=90)
    with Image.open(io.BytesIO(preview(data))) as shown:
        assert shown.size == (800, 400)
    with Image.open(io.BytesIO(preview(data, max_side=300))) as shown:
        assert shown.size == (300, 150)
    small = encode(synthetic(120, 90))
    with Image.open(io.BytesIO(preview(small, blur=False))) as shown:
        assert shown.size == (120, 90)  # never enlarged


def test_preview_flattens_transparency_onto_white() -> None:
    clear = Image.new("RGBA", (50, 40), (255, 0, 0, 0))
    clear.paste((0, 0, 255, 255), (0, 0, 10, 40))
    with Image.open(io.BytesIO(preview(encode(clear), blur=False))) as shown:
        assert shown.mode == "RGB"
        right, left = shown.getpixel((40, 20)), shown.getpixel((2, 20))
    assert isinstance(right, tuple) and isinstance(left, tuple)
    assert min(right) > 240  # white, not the red hidden under alpha 0
    assert left[2] > 200 and left[0] < 60


def test_preview_of_an_animated_gif_is_its_first_frame() -> None:
    frames = [Image.new("RGB", (60, 60), colour) for colour in ((230, 0, 0), (0, 230, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    with Image.open(io.BytesIO(preview(data, blur=False))) as shown:
        pixel = shown.getpixel((30, 30))
    assert isinstance(pixel, tuple) and pixel[0] > 200 and pixel[1] < 40


@pytest.mark.parametrize("format", ["PNG", "WEBP", "GIF", "JPEG"])
async def test_preview_of_each_accepted_format(format: str) -> None:
    data = encode(synthetic().convert("P") if format == "GIF" else synthetic(), format)
    result = await render_preview(data)
    with Image.open(io.BytesIO(result)) as shown:
        assert shown.format == "JPEG" and shown.size == (320, 240)


def test_heic_support_is_optional() -> None:
    installed = importlib.util.find_spec("pillow_heif") is not None
    assert heic_supported() is installed


def test_video_placeholder_is_a_plain_png() -> None:
    data = video_placeholder()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (640, 360)
        assert not set(image.info) - {"dpi", "gamma"}
    assert video_placeholder() is data  # made once


async def test_heic_photos_are_read_previewed_and_hashed() -> None:
    """iPhones send HEIC: with pillow-heif (a dependency) it is typed, previewed and hashed."""
    import pillow_heif

    from helpline.evidence.imaging import heic_supported, pdq_hash, preview
    from helpline.evidence.sniff import sniff

    pillow_heif.register_heif_opener()
    assert heic_supported()
    source = io.BytesIO()
    synthetic(256, 192).save(source, format="HEIF")
    data = source.getvalue()
    assert sniff(data[:8192]).mime == "image/heic"
    shown = Image.open(io.BytesIO(preview(data)))
    assert shown.format == "JPEG" and not shown.getexif()
    assert len((await pdq_hash(data)).hex) == 64
