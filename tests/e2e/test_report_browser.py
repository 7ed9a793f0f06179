"""The report page opens in real headless Chromium (Debian's package) and its SVG charts render."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from leadflow.io import report_files as rr
from tests.unit.test_report_render import build_report

WIDTH, HEIGHT = 1000, 1400


def chromium() -> str:
    """The Chromium binary; missing is a failure, never a skip (`make test` installs it)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed: run `make test` (it apt-get installs it) or `apt-get install chromium`")


def screenshot(html: str, tmp_path: Path) -> np.ndarray:
    """Open a page from a file:// URL in headless Chromium and return the screenshot as an RGB array."""
    page = tmp_path / "page.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "shot.png"
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WIDTH},{HEIGHT}",
               f"--screenshot={shot}", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-500:]}"
    return read_png(shot.read_bytes())


def read_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes) into an H x W x 3 array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    channels = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), dtype=np.int32)
    previous = np.zeros(width * channels, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + previous) % 256
        else:
            row = np.zeros_like(line)
            for x in range(len(line)):
                a = row[x - channels] if x >= channels else 0
                b = previous[x]
                c = previous[x - channels] if x >= channels else 0
                if kind == 1:
                    pred = a
                elif kind == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[x] = (line[x] + pred) % 256
        out[y], previous = row, row
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)


def chart_colours(image: np.ndarray, min_pixels: int = 150) -> set[str]:
    """The chart palette colours that cover at least min_pixels of the screenshot."""
    found = set()
    for colour in rr.PALETTE:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        close = (np.abs(image.astype(int) - rgb).max(axis=2) <= 6).sum()
        if close >= min_pixels:
            found.add(colour)
    return found


def test_png_reader_decodes_a_known_image():
    pixels = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    rows = b"".join(b"\x00" + bytes(r.flatten()) for r in pixels)
    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    assert (read_png(png) == pixels).all()


def test_report_page_renders_its_charts_in_chromium(tmp_path):
    image = screenshot(rr.to_html(build_report()), tmp_path)
    assert image.shape == (HEIGHT, WIDTH, 3)
    # Stacked volume bars (3 sources) and funnel bars use at least five palette colours, each over real areas.
    assert len(chart_colours(image)) >= 5, chart_colours(image)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_the_check_fails_on_a_page_without_charts(tmp_path):
    html = rr.to_html(build_report()).replace("<svg", "<svg style='display:none'")
    image = screenshot(html, tmp_path)
    assert len(chart_colours(image)) == 0
