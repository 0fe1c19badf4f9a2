"""Makers of hostile input for ingest tests: decompression bombs, lying headers, truncated media, huge EXIF,
special files, odd names, deep trees and files that change while they are read. Everything is made by the
test, small on disk (bombs compress; the "huge" file is sparse)."""

from __future__ import annotations

import io
import os
import random
import socket
import stat
import struct
import tempfile
import threading
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from orchestrator.media.av_decode import AVOptions, DecodedAV, decode_av
from scripts.av_write import textured, tone, write_audio, write_video
from scripts.make_samples import scene_image, text_image

_WORDS = ("harbour", "market", "station", "garden", "bridge", "tower", "library", "festival", "parade")


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A distinct small photo-like JPEG (shapes and a printed caption): each seed its own content."""
    buf = io.BytesIO()
    scene_image(random.Random(seed), _WORDS, seed, size).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def text_photo(text: str) -> bytes:
    """A PNG of printed words (findable by its text through OCR)."""
    buf = io.BytesIO()
    text_image(text).save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_claiming(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale PNG whose header claims `width` x `height`; its data holds `rows` rows of zeros (all by
    default: then it is a valid image; zeros compress ~1000:1, so a 12000x12000 one is ~150 KB)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows))
    data += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def tiff_claiming(width: int, height: int) -> bytes:
    """A deflate TIFF of 64x64 pixels whose width and length tags claim `width` x `height`."""
    buf = io.BytesIO()
    Image.new("L", (64, 64)).save(buf, format="TIFF", compression="tiff_deflate")
    raw = bytearray(buf.getvalue())
    assert raw[:2] == b"II"
    ifd = struct.unpack_from("<I", raw, 4)[0]
    for i in range(struct.unpack_from("<H", raw, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", raw, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            value = width if tag == 256 else height
            if kind == 3:  # SHORT
                struct.pack_into("<H", raw, entry + 8, min(value, 0xFFFF))
            else:
                struct.pack_into("<I", raw, entry + 8, value)
    return bytes(raw)


def gif_frames(frames: int, side: int) -> bytes:
    """An animated GIF of `frames` frames of `side` x `side` pixels each (one colour each: tiny)."""
    images = [Image.new("P", (side, side), color=i % 200) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=40)
    return buf.getvalue()


def gif_claiming_screen(width: int, height: int) -> bytes:
    """A small GIF whose logical screen claims `width` x `height`."""
    raw = bytearray(gif_frames(2, 64))
    struct.pack_into("<HH", raw, 6, width, height)
    return bytes(raw)


def noise(size: int, seed: int) -> bytes:
    """`size` random-looking bytes, the same for the same seed (so the failure they cause is too)."""
    return np.random.default_rng(seed).bytes(size)


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    return data[: int(len(data) * fraction)]


def jpeg_with_huge_exif(seed: int) -> bytes:
    """A JPEG whose EXIF fills most of its 64 KB segment: a 48 KB maker note, a 2 KB user comment and a
    camera model of 12 000 characters (starting with an escape sequence); the make is "HostileCam"."""
    exif = Image.Exif()
    exif[0x010F] = "HostileCam"
    exif[0x0110] = "\x1b[31mX" + "X" * 12_000  # Model
    exif[0x0132] = "2020:01:02 03:04:05"  # DateTime
    sub = exif.get_ifd(0x8769)
    sub[0x927C] = noise(48_000, seed)  # MakerNote: opaque vendor data
    sub[0x9286] = b"ASCII\x00\x00\x00" + b"u" * 2000  # UserComment
    assert len(exif.tobytes()) > 60_000
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo(seed))).save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def write_one_frame_video(path: Path) -> None:
    write_video(path, [(textured(180, 320, seed=11), 0.1)], fps=10)


def write_truncated_video(path: Path) -> None:
    """An mp4 cut in half: its index (written last) is gone."""
    write_video(path, [(textured(180, 320, seed=12), 3.0)], fps=10)
    path.write_bytes(truncated(path.read_bytes()))


def write_mkv_claiming(path: Path, seconds: float) -> None:
    """A one-second Matroska video whose Segment Info claims `seconds` of duration."""
    write_video(path, [(textured(180, 320, seed=13), 1.0)], fps=10)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"\x44\x89")  # the Duration element: id, size, float (in timestamp-scale units: ms)
    size = raw[at + 2] & 0x7F
    assert at > 0 and size in (4, 8), "no Duration element"
    struct.pack_into(">d" if size == 8 else ">f", raw, at + 3, seconds * 1000.0)
    path.write_bytes(bytes(raw))


def write_wav_claiming_huge_data(path: Path) -> None:
    """A one-second WAV whose RIFF and data sizes claim ~4 GB (37 hours at 16 kHz)."""
    write_audio(path, tone(1.0), 16000, "wav")
    raw = bytearray(path.read_bytes())
    at = raw.find(b"data")
    struct.pack_into("<I", raw, at + 4, 0xFFFFFF00)
    struct.pack_into("<I", raw, 4, 0xFFFFFF00 + 36)
    path.write_bytes(bytes(raw))


def make_sparse(path: Path, size: int) -> None:
    """A file of `size` bytes (apparent) of which no block is written."""
    with open(path, "wb") as fh:
        fh.truncate(size)


def make_socket(path: Path) -> None:
    """A Unix socket file at `path` (bound under a short temporary path, then moved: sun_path is short)."""
    short = Path(tempfile.mkdtemp(prefix="sock")) / "s"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(short))
    os.rename(short, path)
    short.parent.rmdir()


def make_char_device(path: Path) -> str | None:
    """A character device like /dev/null at `path`; None when made, else why it could not be."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError as exc:
        return f"mknod of a character device is not permitted here ({exc.strerror})"
    return None


def make_deep_tree(top: Path, levels: int, leaf: bytes) -> Path:
    """`levels` nested directories under `top`, a file holding `leaf` at the bottom; its path."""
    directory = top.joinpath(*["d"] * levels)
    directory.mkdir(parents=True)
    path = directory / "bottom.jpg"
    path.write_bytes(leaf)
    return path


def make_beyond_path_max(top: Path, leaf: bytes) -> tuple[str, str]:
    """Nested directories of 250-character names whose full path grows past PATH_MAX (4096), made through
    directory descriptors (no path that long can be opened whole), a file at the bottom. Returns the first
    path too long for the system (where a walk by path must stop) and the bottom file's path."""
    top.mkdir()
    name = "n" * 250
    limit = os.pathconf(top, "PC_PATH_MAX")
    path = str(top)
    first_too_long = ""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(limit // 251 + 2):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            path = f"{path}/{name}"
            if not first_too_long and len(path.encode()) >= limit:
                first_too_long = path
        leaf_fd = os.open("unreachable.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        with os.fdopen(leaf_fd, "wb") as fh:
            fh.write(leaf)
    finally:
        os.close(fd)
    return first_too_long, f"{path}/unreachable.jpg"


class ChangingFile:
    """A thread that keeps changing a file's length, 1 KB every half millisecond, from `start` bytes
    towards `end` bytes (growing or shrinking), until it gets there or is stopped. Every state of the file
    is a prefix of `content`, which begins with a valid image: whatever a reader sees is an image, only
    its tail moves. Big enough (tens of MB) that a read of it overlaps many changes."""

    STEP = 1024

    def __init__(self, path: Path, image: bytes, start: int, end: int) -> None:
        self.path = path
        self.content = image + np.random.default_rng(start).bytes(max(start, end))
        self.start_size = len(image) + start
        self.end_size = len(image) + end
        path.write_bytes(self.content[: self.start_size])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"changing-{path.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        size = self.start_size
        with open(self.path, "r+b") as fh:
            while size != self.end_size and not self._stop.wait(0.0005):
                if size < self.end_size:
                    fh.seek(size)
                    fh.write(self.content[size : min(size + self.STEP, self.end_size)])
                    fh.flush()
                    size = min(size + self.STEP, self.end_size)
                else:
                    size = max(self.end_size, size - self.STEP)
                    fh.truncate(size)


def swap_for_fifo_then_decode(path: str, options: AVOptions) -> DecodedAV:
    """A decode pool target (runs in the worker): the file the job hashed is replaced by a FIFO just before
    the decoder opens it, as a hostile writer racing the job could; then the real decode."""
    os.unlink(path)
    os.mkfifo(path)
    return decode_av(path, options)
