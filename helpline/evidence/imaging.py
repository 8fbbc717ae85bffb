"""Image work on evidence: PDQ perceptual hashes, and previews that are safe to show staff.

Every decode starts with the header only (`Image.open` is lazy): images over 50 megapixels or
20,000 pixels on a side are refused before a single pixel is decoded, whatever Pillow's global
`MAX_IMAGE_PIXELS` says, and Pillow's own decompression-bomb error (or its warning, when
warnings are errors) is turned into the same refusal. Only the formats the helpline accepts
are decoded (JPEG, PNG, WebP, GIF, and HEIC/HEIF when `pillow-heif` is installed; it is an
optional extra, not a dependency), so a file never reaches one of Pillow's rarer decoders.

PDQ follows Meta's reference implementations: the pixels as stored (EXIF orientation is not
applied), shrunk to at most 512x512 as the reference Python hasher does, luminance from RGB,
and the hash written as the reference `Hash256.toHexString` does: 16 words of 16 bits from
word 15 down to word 0, where bit k = 16*i + j is DCT coefficient (i, j) above the median.

Previews are built from pixel data into a fresh image, so no EXIF (GPS!), ICC, XMP or comment
survives; orientation is applied first, then the image is shrunk and, by default, blurred.

Video: no library available here decodes video frames (there is no ffmpeg or PyAV), so video
evidence gets `video_placeholder()`, a plain generated image, instead of a poster frame.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import io
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageOps, UnidentifiedImageError

from helpline.core.errors import Invalid

MAX_PIXELS = 50_000_000
MAX_SIDE = 20_000
PDQ_SIDE = 512  # Meta's reference Python hasher thumbnails to this before hashing
WORKERS = 2  # image decodes at once per event loop: each may use a few hundred MiB
PREVIEW_MIME = "image/jpeg"
_BASE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

T = TypeVar("T")


class ImageRefused(Invalid):
    """An image that is not decoded: too large, a decompression bomb, or unreadable."""

    code = "image_refused"


@dataclass(frozen=True, slots=True)
class PdqHash:
    """A PDQ hash in its standard form (64 hex characters) and its quality, 0-100. Hashes with
    quality below 50 are too unreliable to match on."""

    hex: str
    quality: int


# One semaphore per event loop (a semaphore belongs to the loop it first waits on), made on
# first use: importing this module starts nothing.
_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    semaphore = _semaphores.get(loop)
    if semaphore is None:
        semaphore = _semaphores[loop] = asyncio.Semaphore(WORKERS)
    return semaphore


async def in_image_worker(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking image work in a thread, at most WORKERS at a time, off the event loop. A
    cancelled caller still waits for its thread, so the bound holds."""
    async with _semaphore():
        task = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait({task})
            raise


@functools.cache
def _formats() -> tuple[str, ...]:
    try:
        heif: Any = importlib.import_module("pillow_heif")
    except ImportError:
        return _BASE_FORMATS
    heif.register_heif_opener()
    return (*_BASE_FORMATS, "HEIF")


def heic_supported() -> bool:
    """Whether HEIC/HEIF images can be hashed and previewed here (`pillow-heif` installed)."""
    return "HEIF" in _formats()


def _open(data: bytes) -> Image.Image:
    """The image in `data`, header read and checked, pixels not yet decoded."""
    try:
        image = Image.open(io.BytesIO(data), formats=_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused("this image is too large to process") from None
    except _DECODE_ERRORS:
        raise ImageRefused("this image could not be read") from None
    width, height = image.size
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        image.close()
        raise ImageRefused(
            f"this image is too large to process ({width}x{height} pixels; the limit is "
            f"{MAX_PIXELS // 1_000_000} megapixels and {MAX_SIDE} pixels a side)",
            width=width,
            height=height,
        )
    if width < 1 or height < 1:
        image.close()
        raise ImageRefused("this image has no pixels")
    return image


# ---------------------------------------------------------------- PDQ


def _pdq_compute(rgb: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], int]:
    """pdqhash.compute, typed (the package ships no type information). Returns the 256 bits
    most significant first (bit 255 first, as pdqhash orders them) and the quality."""
    pdqhash: Any = importlib.import_module("pdqhash")
    vector, quality = pdqhash.compute(rgb)
    return np.asarray(vector, dtype=np.uint8), int(quality)


def pdq_hex(bits: npt.NDArray[np.uint8]) -> str:
    """The standard hex form of 256 hash bits given most significant (bit 255) first."""
    if bits.shape != (256,):
        raise ValueError("a PDQ hash has 256 bits")
    return np.packbits(bits).tobytes().hex()


def pdq_hash_sync(data: bytes) -> PdqHash:
    """The PDQ hash of an image; blocking (see `pdq_hash`)."""
    try:
        with _open(data) as image:
            image.thumbnail((PDQ_SIDE, PDQ_SIDE))
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ImageRefused:
        raise
    except _DECODE_ERRORS:
        raise ImageRefused("this image could not be read") from None
    bits, quality = _pdq_compute(np.ascontiguousarray(rgb))
    return PdqHash(hex=pdq_hex(bits), quality=quality)


async def pdq_hash(data: bytes) -> PdqHash:
    """The PDQ hash of an image, computed in the bounded image worker. Raises ImageRefused for
    an image that is too large or cannot be read."""
    return await in_image_worker(pdq_hash_sync, data)


def hamming_distance(a: str, b: str) -> int:
    """Bits in which two hex PDQ hashes differ; 31 or fewer is a match."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


# ---------------------------------------------------------------- previews


def _on_white(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def preview(data: bytes, *, blur: bool = True, max_side: int = 800) -> bytes:
    """A JPEG preview of an image for staff; blocking (see `render_preview`).

    EXIF orientation is applied, the image shrunk to fit `max_side`, transparency flattened
    onto white, the first frame taken of an animation, and with `blur` a strong Gaussian blur
    (radius a twentieth of the longer side) applied. The result is re-encoded from pixel data
    only: no metadata of the original survives.
    """
    if max_side < 16:
        raise ValueError("max_side must be at least 16")
    try:
        with _open(data) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale
            image.load()
            oriented = ImageOps.exif_transpose(image)
        oriented.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        flat = _on_white(oriented)
    except ImageRefused:
        raise
    except _DECODE_ERRORS:
        raise ImageRefused("this image could not be read") from None
    if blur:
        radius = max(4, max(flat.size) // 20)
        flat = flat.filter(ImageFilter.GaussianBlur(radius))
    clean = Image.frombytes("RGB", flat.size, flat.tobytes())  # pixels only, no info
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=82, optimize=True)
    return out.getvalue()


async def render_preview(data: bytes, *, blur: bool = True, max_side: int = 800) -> bytes:
    """`preview` in the bounded image worker."""
    return await in_image_worker(preview, data, blur=blur, max_side=max_side)


@functools.cache
def video_placeholder() -> bytes:
    """A plain PNG to show where a video's poster frame would be: no library that can decode
    video frames is available here."""
    width, height = 640, 360
    image = Image.new("RGB", (width, height), (48, 52, 58))
    draw = ImageDraw.Draw(image)
    cx, cy, r = width // 2, height // 2, 60
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(200, 204, 210), width=6)
    draw.polygon([(cx - 20, cy - 32), (cx - 20, cy + 32), (cx + 34, cy)], fill=(200, 204, 210))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
