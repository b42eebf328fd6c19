#!/usr/bin/env python3
"""Per image and portal rule, in one run: our pipeline (the `fit_bench` example, i.e.
`pipeline::process_image`, the code `rythmiq process` runs), libvips' `thumbnail` in-process
(pyvips, warmed up, operation cache off) and ImageMagick `convert ... -define jpeg:extent=`.
Reports CPU seconds (median of --reps calls) and checks every output with one independent
checker (this file): format by magic bytes, exact pixel size, DPI stored in the file, byte size
within [min_kb × 1024, max_kb × 1000].

Rules with a `[face]` table frame the photo by its face, so they get only the portraits (PORTRAITS);
for them our cost is the face path (detection and framing), and `fit_bench` also times the same
image and rule with the framing off (the subject crop, the fast path) to report the difference.

Usage: bench.py --fit-bench PATH --corpus DIR --out DIR [--reps N] [--convert PATH]
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import time

import pyvips

# ----------------------------------------------------------------------------------------------
# Compliance (independent of the Rust code under test)


def exif_dpi(tiff):
    """DPI from EXIF IFD0 XResolution/YResolution/ResolutionUnit (None unless both agree)."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    e = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(e + "I", tiff[4:8])
    (count,) = struct.unpack(e + "H", tiff[ifd:ifd + 2])
    tags = {}
    for i in range(count):
        tag, typ, n, value = struct.unpack(e + "HHII", tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i])
        if typ == 5:  # RATIONAL, stored at an offset
            num, den = struct.unpack(e + "II", tiff[value:value + 8])
            tags[tag] = num / den if den else None
        elif typ == 3:  # SHORT, left-aligned in the value field
            tags[tag] = struct.unpack(e + "H", tiff[ifd + 10 + 12 * i:ifd + 12 + 12 * i])[0]
    x, y, unit = tags.get(0x011A), tags.get(0x011B), tags.get(0x0128, 2)
    if x is None or x != y:
        return None
    return round(x) if unit == 2 else round(x * 2.54) if unit == 3 else None


def jpeg_info(data):
    """(width, height, dpi or None) from a JPEG's SOF and its JFIF APP0 density (or, when there is
    no JFIF segment, its EXIF resolution: libvips writes the DPI only there)."""
    pos, width, height, dpi, exif = 2, None, None, None, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        body = data[pos + 4:pos + 2 + length]
        if marker == 0xE0 and body[:5] == b"JFIF\0" and len(body) >= 12:
            units, xd, yd = body[7], *struct.unpack(">HH", body[8:12])
            if units == 1 and xd == yd:
                dpi = xd
            elif units == 2 and xd == yd:
                dpi = round(xd * 2.54)
        if marker == 0xE1 and body[:6] == b"Exif\0\0":
            exif = exif_dpi(body[6:])
        if marker in (0xC0, 0xC1, 0xC2) and len(body) >= 5:
            height, width = struct.unpack(">HH", body[1:5])
        if marker == 0xDA:
            break
        pos += 2 + length
    return width, height, dpi if dpi is not None else exif


def png_info(data):
    width, height = struct.unpack(">II", data[16:24])
    dpi, pos = None, 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind == b"pHYs":
            x, y, unit = struct.unpack(">IIB", data[pos + 8:pos + 17])
            if unit == 1 and x == y:
                dpi = round(x * 0.0254)
        if kind == b"IDAT":
            break
        pos += 12 + length
    return width, height, dpi


def pdf_info(data):
    """Pixel size of the (single) image XObject and the DPI implied by the page's MediaBox."""
    text = data.decode("latin-1")
    w = re.search(r"/Width\s+(\d+)", text)
    h = re.search(r"/Height\s+(\d+)", text)
    box = re.search(r"/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\]", text)
    if not (w and h and box):
        return None, None, None
    width, height = int(w.group(1)), int(h.group(1))
    page_w = float(box.group(3)) - float(box.group(1))
    dpi = round(width * 72 / page_w) if page_w > 0 else None
    return width, height, dpi


def check(data, rule):
    """A list of reasons the file breaks the rule (empty: compliant)."""
    if data is None:
        return ["no output"]
    fmt = ("jpg" if data[:3] == b"\xff\xd8\xff" else "png" if data[:8] == b"\x89PNG\r\n\x1a\n"
           else "pdf" if data[:5] == b"%PDF-" else None)
    reasons = []
    if fmt != rule["format"]:
        return [f"format {fmt or 'unknown'} (wants {rule['format']})"]
    try:
        w, h, dpi = {"jpg": jpeg_info, "png": png_info, "pdf": pdf_info}[fmt](data)
    except (struct.error, IndexError, ValueError):
        return ["unreadable header"]
    if (w, h) != (rule["width"], rule["height"]):
        reasons.append(f"size {w}x{h}")
    if dpi != rule["dpi"]:
        reasons.append(f"dpi {dpi}")
    lo, hi = rule["min_kb"] * 1024, rule["max_kb"] * 1000
    if not lo <= len(data) <= hi:
        reasons.append(f"bytes {len(data)} outside {lo}-{hi}")
    return reasons


# ----------------------------------------------------------------------------------------------
# Peers


def vips_fit(data, rule):
    """What a libvips user writes: thumbnail (shrink-on-load, crop to fill) + save at the default
    quality with the DPI set. libvips has no PDF writer, so PDF rules get a JPEG."""
    thumb = pyvips.Image.thumbnail_buffer(data, rule["width"], height=rule["height"], crop="centre")
    if thumb.bands == 4:
        thumb = thumb.flatten(background=[255, 255, 255])
    res = rule["dpi"] / 25.4  # libvips resolution is pixels per millimetre
    thumb = thumb.copy(xres=res, yres=res)
    # No `strip`: libvips writes the DPI in the EXIF block, which stripping would drop.
    if rule["format"] == "png":
        return thumb.pngsave_buffer()
    return thumb.jpegsave_buffer()


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def magick_cmd(convert, src, dst, rule):
    w, h = rule["width"], rule["height"]
    cmd = [convert, "-define", f"jpeg:size={2 * w}x{2 * h}", src, "-auto-orient",
           "-thumbnail", f"{w}x{h}^", "-gravity", "center", "-extent", f"{w}x{h}",
           "-units", "PixelsPerInch", "-density", str(rule["dpi"])]
    if rule["format"] == "pdf":
        cmd += ["-compress", "jpeg"]
    else:
        cmd += ["-define", f"jpeg:extent={rule['max_kb']}KB"]
    return cmd + [dst]


# Corpus images showing one face, framed as a portrait (make_corpus.py): the only inputs a rule
# that frames by the face is given, as a student would upload for a photo.
PORTRAITS = ("phone-astronaut-12mp.jpg", "phone-astronaut-12mp-exif6.jpg", "small-astronaut.jpg")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fit-bench", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--convert", default=shutil.which("convert-im6.q16") or "convert")
    a = ap.parse_args()

    pyvips.cache_set_max(0)  # a cached thumbnail would cost nothing on the second call
    rules = [json.loads(l) for l in subprocess.run(
        [a.fit_bench, "--list-rules"], check=True, capture_output=True, text=True).stdout.splitlines()]
    images = sorted(f for f in os.listdir(a.corpus) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    for tool in ("rythmiq", "vips", "magick"):
        os.makedirs(os.path.join(a.out, tool), exist_ok=True)

    # ImageMagick start-up alone (a 1×1 image in and out), to read its figures fairly.
    t = cpu_children()
    for _ in range(a.reps):
        subprocess.run([a.convert, "xc:white", "-resize", "1x1", "null:"], check=True)
    magick_startup = (cpu_children() - t) / a.reps

    rows = []
    for name in images:
        src = os.path.join(a.corpus, name)
        with open(src, "rb") as f:
            data = f.read()
        info = pyvips.Image.new_from_buffer(data, "")
        dims = f"{info.width}x{info.height}"
        stem = os.path.splitext(name)[0]
        mine = [r for r in rules if name in PORTRAITS or not r.get("face")]
        # Ours: one subprocess for all rules of this image (warm-up and timing inside).
        portals = [arg for r in mine for arg in ("--portal", r["slug"])]
        out = subprocess.run([a.fit_bench, "--out", os.path.join(a.out, "rythmiq"), "--reps",
                              str(a.reps), *portals, src], check=True, capture_output=True,
                             text=True).stdout
        ours = {r["rule"]: r for r in map(json.loads, out.splitlines())}
        for rule in mine:
            ext = rule["format"]
            row = {"image": name, "dims": dims, "bytes_in": len(data), "rule": rule["slug"]}
            o = ours[rule["slug"]]
            odata = open(o["output"], "rb").read() if o.get("status") == "ok" else None
            row["rythmiq"] = {"cpu_s": o["cpu_s"], "path": o.get("path"), "error": o.get("error_code"),
                              "stages": o.get("stages"), "warnings": o.get("warnings"),
                               "capture_cpu_s": o.get("capture_cpu_s"),
                               "fast_cpu_s": o.get("fast_cpu_s"), "reasons": check(odata, rule)}
            # libvips in-process: warm-up, then the median of reps.
            vips_fit(data, rule)
            times = []
            for _ in range(a.reps):
                t = cpu_self()
                vdata = vips_fit(data, rule)
                times.append(cpu_self() - t)
            with open(os.path.join(a.out, "vips", f"{stem}__{rule['slug']}.{'jpg' if ext == 'pdf' else ext}"), "wb") as f:
                f.write(vdata)
            row["vips"] = {"cpu_s": statistics.median(times), "reasons": check(vdata, rule)}
            # ImageMagick: a process per call (its start-up is part of its cost here).
            dst = os.path.join(a.out, "magick", f"{stem}__{rule['slug']}.{ext}")
            cmd = magick_cmd(a.convert, src, dst, rule)
            times = []
            for _ in range(a.reps):
                t = cpu_children()
                subprocess.run(cmd, check=False, capture_output=True)
                times.append(cpu_children() - t)
            mdata = open(dst, "rb").read() if os.path.exists(dst) else None
            row["magick"] = {"cpu_s": statistics.median(times), "reasons": check(mdata, rule)}
            rows.append(row)
            print(f"{name:38} {rule['slug']:26} ours {row['rythmiq']['cpu_s'] * 1000:7.1f} ms "
                  f"vips {row['vips']['cpu_s'] * 1000:7.1f} ms magick {row['magick']['cpu_s'] * 1000:7.1f} ms "
                  f"| ours {'ok' if not row['rythmiq']['reasons'] else row['rythmiq']['reasons']}",
                  file=sys.stderr)

    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"rules": rules, "rows": rows, "magick_startup_cpu_s": magick_startup,
                   "reps": a.reps, "libvips": pyvips.version(0) * 100 + pyvips.version(1),
                   "date": time.strftime("%Y-%m-%d %H:%M")}, f, indent=1)
    print(summary(rows, rules, magick_startup))


def summary(rows, rules, magick_startup):
    tools = ("rythmiq", "vips", "magick")
    out = ["## CPU per image (median over the rules; ms)", "",
           "| image | pixels | ours | pyvips | ImageMagick |", "|---|---|---:|---:|---:|"]
    for name in dict.fromkeys(r["image"] for r in rows):
        rs = [r for r in rows if r["image"] == name]
        cells = [f"{statistics.median(r[t]['cpu_s'] for r in rs) * 1000:.1f}" for t in tools]
        out.append(f"| {name} | {rs[0]['dims']} | " + " | ".join(cells) + " |")
    cells = [f"{statistics.mean(r[t]['cpu_s'] for r in rows) * 1000:.1f}" for t in tools]
    out.append("| **mean over all fits** | | " + " | ".join(f"**{c}**" for c in cells) + " |")
    out += ["", f"ImageMagick start-up alone (1×1 in, nothing out): {magick_startup * 1000:.1f} ms CPU a call.",
            "", "## Compliance (outputs meeting every rule: format, size, DPI, byte window)", "",
            "| tool | compliant | of | reasons for the others |", "|---|---:|---:|---|"]
    for t in tools:
        bad = [r for r in rows if r[t]["reasons"]]
        kinds = {}
        for r in bad:
            for reason in r[t]["reasons"]:
                key = re.sub(r"\d+", "N", reason)
                kinds[key] = kinds.get(key, 0) + 1
        text = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        out.append(f"| {t} | {len(rows) - len(bad)} | {len(rows)} | {text or '-'} |")
    out += ["", "## Per rule (ms CPU, mean over images; compliant outputs)", "",
            "| rule | ours | pyvips | ImageMagick |", "|---|---|---|---|"]
    for rule in rules:
        rs = [r for r in rows if r["rule"] == rule["slug"]]
        if not rs:
            continue
        cells = [f"{statistics.mean(r[t]['cpu_s'] for r in rs) * 1000:.1f} ms, "
                 f"{sum(not r[t]['reasons'] for r in rs)}/{len(rs)}" for t in tools]
        out.append(f"| {rule['slug']} | " + " | ".join(cells) + " |")
    out += face_summary(rows)
    out += capture_summary(rows)
    return "\n".join(out)


def capture_summary(rows):
    """CAPTURE's CPU on the document rules: ours with it (as run) and without it (the rest)."""
    rs = [r for r in rows if r["rythmiq"].get("capture_cpu_s") is not None]
    if not rs:
        return []
    out = ["", "## CAPTURE (ms CPU, mean over the document rules)", "",
           "| image | pixels | ours | of which CAPTURE | ours less CAPTURE |", "|---|---|---:|---:|---:|"]
    for name in dict.fromkeys(r["image"] for r in rs):
        ri = [r for r in rs if r["image"] == name]
        on = statistics.mean(r["rythmiq"]["cpu_s"] for r in ri) * 1000
        cap = statistics.mean(r["rythmiq"]["capture_cpu_s"] for r in ri) * 1000
        out.append(f"| {name} | {ri[0]['dims']} | {on:.1f} | {cap:.1f} | {on - cap:.1f} |")
    return out


def face_summary(rows):
    """The face path beside the fast path: same image, same rule, framing on and off."""
    rs = [r for r in rows if r["rythmiq"].get("fast_cpu_s") is not None]
    if not rs:
        return []
    out = ["", "## Face path beside the fast path (ours; ms CPU, median of the reps)", "",
           "Framing on: face detection, a second look on the first framing, the framed canvas. "
           "Framing off: the same image and rule through the subject crop.", "",
           "| image | rule | framed | fast path | added | ratio |", "|---|---|---:|---:|---:|---:|"]
    for r in rs:
        on, off = r["rythmiq"]["cpu_s"], r["rythmiq"]["fast_cpu_s"]
        out.append(f"| {r['image']} | {r['rule']} | {on * 1000:.1f} | {off * 1000:.1f} | "
                   f"{(on - off) * 1000:+.1f} | {on / off:.2f}× |")
    added = [r["rythmiq"]["cpu_s"] - r["rythmiq"]["fast_cpu_s"] for r in rs]
    out += ["", f"Added by the face path: median {statistics.median(added) * 1000:.1f} ms, "
                f"max {max(added) * 1000:.1f} ms CPU a photo."]
    return out


if __name__ == "__main__":
    main()
