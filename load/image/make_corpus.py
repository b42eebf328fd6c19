#!/usr/bin/env python3
"""Builds the benchmark corpus from public-domain / CC0 photos that scikit-image ships in its PyPI
wheel (skimage/data), plus the pipeline's photo fixtures.

No registry package we know of ships public-domain photos of phone size (12 MP), so the
"phone" inputs are real photos enlarged to phone resolution with sensor-like grain added, encoded
like a phone camera does (JPEG quality 90-92, 4:2:0): about 0.3-0.4 bytes a pixel, so the
entropy decoding, which dominates a large JPEG's decode, costs what a real phone photo costs.
One is stored landscape with EXIF orientation 6 (how phones store portrait shots), one is
progressive. The PNG "scans" are skimage's scanned page and text samples laid on A4 pages at
200 and 300 DPI with paper grain.

Usage: make_corpus.py SKIMAGE_DATA_DIR FIXTURES_DIR OUT_DIR
"""
import os
import shutil
import sys

import pyvips

data, fixtures, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)


def load(name):
    return pyvips.Image.new_from_file(os.path.join(data, name), access="sequential").copy_memory()


def rgb(im):
    return im.colourspace("srgb") if im.bands < 3 else im


def grain(im, sigma):
    """Luminance grain (same noise on every band) plus a little chroma noise, as a phone leaves."""
    luma = pyvips.Image.gaussnoise(im.width, im.height, sigma=sigma, mean=0)
    chroma = [pyvips.Image.gaussnoise(im.width, im.height, sigma=sigma / 3, mean=0) for _ in range(im.bands)]
    noise = luma.bandjoin(luma).bandjoin(luma) if im.bands == 3 else luma
    if im.bands == 3:
        noise = noise + chroma[0].bandjoin(chroma[1]).bandjoin(chroma[2])
    return (im.cast("float") + noise).cast("uchar")


def cover(im, w, h):
    """Enlarge (Lanczos) to cover w×h and centre-crop to it."""
    scale = max(w / im.width, h / im.height)
    big = im.resize(scale, kernel="lanczos3")
    return big.crop((big.width - w) // 2, (big.height - h) // 2, w, h)


def save_jpeg(im, name, q, **kw):
    path = os.path.join(out, name)
    im.jpegsave(path, Q=q, subsample_mode="on", strip=True, **kw)
    size = os.path.getsize(path)
    print(f"{name}: {im.width}x{im.height}, {size} bytes, {size / (im.width * im.height):.2f} B/px")


astronaut = rgb(load("astronaut.png"))
coffee = rgb(load("coffee.png"))
rocket = rgb(load("rocket.jpg"))
chelsea = rgb(load("chelsea.png"))
motorcycle = rgb(load("motorcycle_left.png"))

# 12 MP portrait, upright (3024×4032).
portrait = grain(cover(astronaut, 3024, 4032), 5.0)
save_jpeg(portrait, "phone-astronaut-12mp.jpg", 92)
# The same shot stored as a phone stores it: landscape pixels, EXIF orientation 6 (rotate 90° CW
# to view).
stored = portrait.rot270().copy()
stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
path = os.path.join(out, "phone-astronaut-12mp-exif6.jpg")
stored.jpegsave(path, Q=92, subsample_mode="on")
print(f"phone-astronaut-12mp-exif6.jpg: {stored.width}x{stored.height}, {os.path.getsize(path)} bytes (EXIF orientation 6)")
save_jpeg(grain(cover(coffee, 4032, 3024), 5.0), "phone-coffee-12mp.jpg", 92)
save_jpeg(grain(cover(rocket, 4000, 2667), 5.0), "phone-rocket-10mp-progressive.jpg", 90, interlace=True)
save_jpeg(grain(cover(chelsea, 3264, 2448), 5.0), "camera-chelsea-8mp.jpg", 90)
save_jpeg(grain(cover(motorcycle, 2592, 1944), 4.0), "camera-motorcycle-5mp.jpg", 88)

# Small uploads as they are: the pipeline's fixtures (baseline JPEG, quality 85).
for name in ("astronaut.jpg", "coffee.jpg"):
    shutil.copy(os.path.join(fixtures, name), os.path.join(out, "small-" + name))
    print(f"small-{name}: copied from the fixtures")


def page(w, h, dpi, tint):
    """A sheet of paper: near-white with grain and a slight tint."""
    base = pyvips.Image.black(w, h, bands=3) + tint
    return grain(base.cast("uchar"), 1.5)


def place(sheet, im, x, y, width):
    im = rgb(im).resize(width / im.width, kernel="lanczos3")
    return sheet.insert(im.cast("uchar"), x, y)


# A4 at 200 DPI (1654×2339), grey: the scanned page laid at the top, text below.
sheet = page(1654, 2339, 200, [246, 245, 240])
sheet = place(sheet, load("page.png"), 120, 150, 1400)
sheet = place(sheet, load("text.png"), 120, 1000, 1400)
grey = sheet.colourspace("b-w")
path = os.path.join(out, "scan-page-a4-200dpi.png")
grey.pngsave(path, compression=6)
print(f"scan-page-a4-200dpi.png: {grey.width}x{grey.height}, {os.path.getsize(path)} bytes")

# A4 at 300 DPI (2480×3508), colour: a certificate-like page with a photo and text.
sheet = page(2480, 3508, 300, [250, 247, 238])
sheet = place(sheet, load("text.png"), 200, 250, 2080)
sheet = place(sheet, astronaut, 200, 1200, 700)
sheet = place(sheet, load("page.png"), 1000, 1300, 1280)
path = os.path.join(out, "scan-certificate-a4-300dpi.png")
sheet.pngsave(path, compression=6)
print(f"scan-certificate-a4-300dpi.png: {sheet.width}x{sheet.height}, {os.path.getsize(path)} bytes")
