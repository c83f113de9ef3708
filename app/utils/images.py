"""Image validation by content: magic bytes first, then a full Pillow decode."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.errors import BadImage, ImageTooLarge, UnsupportedImage

# Leading bytes of the accepted formats -> (Pillow format, media type, file suffix).
SIGNATURES: tuple[tuple[bytes, str, str, str], ...] = (
    (b"\xff\xd8\xff", "JPEG", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "PNG", "image/png", ".png"),
    (b"II*\x00", "TIFF", "image/tiff", ".tif"),
    (b"MM\x00*", "TIFF", "image/tiff", ".tif"),
    (b"BM", "BMP", "image/bmp", ".bmp"),
)
SNIFF_BYTES = 16
ACCEPTED_FORMATS_TEXT = "JPEG, PNG, TIFF or BMP"


@dataclass(frozen=True)
class ImageInfo:
    """What validation learnt about an image: format, media type, suffix and size in pixels."""

    format: str
    media_type: str
    suffix: str
    width: int
    height: int


def sniff_format(head: bytes, filename: str) -> tuple[str, str, str]:
    """(Pillow format, media type, suffix) from the first bytes of a file.

    Raises:
        BadImage: the file is empty.
        UnsupportedImage: the bytes are not those of a JPEG, PNG, TIFF or BMP file.
    """
    if not head:
        raise BadImage(f"'{filename}' is empty (0 bytes); choose a {ACCEPTED_FORMATS_TEXT} image")
    for signature, fmt, media_type, suffix in SIGNATURES:
        if head.startswith(signature):
            return fmt, media_type, suffix
    # Never quote the bytes: the message reaches clients, logs and hot-folder notes, and
    # the file may be anything (a link's target, a secret).
    raise UnsupportedImage(
        f"'{filename}' is not a {ACCEPTED_FORMATS_TEXT} image by its content; the file name's"
        " extension is not what counts, the content is"
    )


def validate_image(path: Path, filename: str, max_pixels: int) -> ImageInfo:
    """Check that the file at `path` is a whole, decodable, single-page image of an accepted
    format that the model service will also accept.

    The same checks as the reference model service's decoder, plus more: every PNG chunk's
    CRC (Pillow's `verify`), the pixel limit from the header before any decoding, one
    page only, then a complete decode. JPEGs are decoded at 1/8 scale (`draft`): every
    byte of the stream is still read, at 1/64 of the memory.

    Blocking (decodes the whole image): call it from a worker thread, through a limiter
    that bounds how many decodes run at once (memory: up to width x height x 4 bytes each).

    Args:
        path: the received file.
        filename: the client's name for it, only used in messages.
        max_pixels: the largest accepted width x height (MAX_IMAGE_PIXELS).

    Raises:
        BadImage: empty, truncated or corrupt (a PNG checksum included), or several pages.
        UnsupportedImage: not a JPEG, PNG, TIFF or BMP by content.
        ImageTooLarge: more than `max_pixels` pixels.
    """
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    fmt, media_type, suffix = sniff_format(head, filename)
    too_many = ImageTooLarge(
        f"'{filename}' has more than {max_pixels:,} pixels (MAX_IMAGE_PIXELS), the most the"
        " model service accepts; it is also refused as a possible decompression bomb."
        " Upload a smaller image"
    )
    try:
        with warnings.catch_warnings():
            # The limit is `max_pixels`, checked below from the header before decoding;
            # Pillow's process-wide MAX_IMAGE_PIXELS is left alone (its hard error stays).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format != fmt:
                    raise UnsupportedImage(
                        f"'{filename}' looks like {fmt} but decodes as {img.format}; upload a"
                        f" plain {ACCEPTED_FORMATS_TEXT} file"
                    )
                width, height = img.size
                if width * height > max_pixels:
                    raise too_many
                pages = int(getattr(img, "n_frames", 1))
                if pages > 1:
                    raise BadImage(
                        f"'{filename}' holds {pages} pages; the model service inspects"
                        " one image at a time, so upload one page per image"
                    )
                img.verify()  # chunk CRCs (PNG); the file must be opened again to decode
            with Image.open(path) as img:
                if fmt == "JPEG":
                    img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
                img.load()
    except Image.DecompressionBombError as exc:
        raise too_many from exc
    except UnidentifiedImageError as exc:
        raise BadImage(
            f"'{filename}' has a {fmt} header but cannot be read; the file is corrupt"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(
            f"'{filename}' is not a whole, valid {fmt} image ({_reason(exc)}); it may be"
            " truncated or damaged — upload the file again"
        ) from exc
    if width < 1 or height < 1:
        raise BadImage(f"'{filename}' has no pixels")
    return ImageInfo(format=fmt, media_type=media_type, suffix=suffix, width=width, height=height)


_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")


def _reason(exc: BaseException) -> str:
    """The decoder's reason, without anything it quotes: Pillow quotes bytes of the file
    in some messages (`broken PNG file (chunk b'...')`), and no message quotes input."""
    text = _QUOTED.sub("...", str(exc).strip()) or type(exc).__name__
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:200]
