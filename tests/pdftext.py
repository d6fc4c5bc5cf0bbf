"""The text lines of a PDF that fpdf2 wrote (Type0 fonts, Identity-H, ToUnicode CMaps), compressed or
not: enough to check what an invoice shows without poppler or pypdf in the test environment.

Each text-showing operator (``(…) Tj``) is decoded with the CMap of the font selected before it
(``/F1 9 Tf``), so a regular and a bold subset, which number their glyphs independently, never mix.
One string per ``Tj``: fpdf2 writes a cell's or a wrapped line's text in one piece.
"""

from __future__ import annotations

import re
import zlib

_OBJECT = re.compile(rb"(\d+) 0 obj(.*?)endobj", re.S)
_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_TOKENS = re.compile(rb"/(\w+)\s+[\d.]+\s+Tf|\(((?:[^\\()]|\\.)*)\)\s*Tj", re.S)


def _unescape(raw: bytes) -> bytes:
    out, i = bytearray(), 0
    simple = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}
    while i < len(raw):
        c = raw[i]
        if c != 0x5C:  # backslash
            out.append(c)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt in simple:
            out += simple[nxt]
            i += 2
        elif 0x30 <= nxt <= 0x37:
            digits = re.match(rb"[0-7]{1,3}", raw[i + 1:i + 4]).group()
            out.append(int(digits, 8) & 0xFF)
            i += 1 + len(digits)
        else:
            out.append(nxt)
            i += 2
    return bytes(out)


def _objects(pdf: bytes) -> dict[int, tuple[bytes, bytes]]:
    """Object number -> (dictionary, stream data, inflated when /FlateDecode)."""
    out = {}
    for number, body in _OBJECT.findall(pdf):
        stream = _STREAM.search(body)
        data = stream.group(1) if stream else b""
        head = body[: stream.start()] if stream else body
        if b"/FlateDecode" in head:
            # A decompressor object, not zlib.decompress: when the stream's last byte is a \r, _STREAM's
            # "\r?\nendstream" takes it as the line break, and only the checksum's tail is lost.
            data = zlib.decompressobj().decompress(data)
        out[int(number)] = (head, data)
    return out


def _cmap(data: bytes) -> dict[int, str]:
    table = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", data, re.S):
        for code, text in re.findall(rb"<([0-9A-Fa-f]{4})>\s*<([0-9A-Fa-f]+)>", block):
            table[int(code, 16)] = bytes.fromhex(text.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", data, re.S):
        for first, last, start in re.findall(rb"<([0-9A-Fa-f]{4})>\s*<([0-9A-Fa-f]{4})>\s*<([0-9A-Fa-f]+)>", block):
            base = int(start, 16)
            for offset, code in enumerate(range(int(first, 16), int(last, 16) + 1)):
                table[code] = chr(base + offset)
    return table


def pdf_lines(pdf: bytes) -> list[str]:
    """Every ``Tj`` string of every page, decoded, in drawing order."""
    objects = _objects(pdf)
    fonts: dict[bytes, dict[int, str]] = {}
    for head, _ in objects.values():
        for block in re.findall(rb"/Font\s*<<(.*?)>>", head, re.S):
            for name, ref in re.findall(rb"/(\w+)\s+(\d+) 0 R", block):
                font_head = objects[int(ref)][0]
                to_unicode = re.search(rb"/ToUnicode (\d+) 0 R", font_head)
                fonts[name] = _cmap(objects[int(to_unicode.group(1))][1]) if to_unicode else {}
    lines: list[str] = []
    for head, _ in objects.values():
        if b"/Contents" in head:
            contents = re.search(rb"/Contents (\d+) 0 R", head)
            cmap: dict[int, str] = {}
            for font, string in _TOKENS.findall(objects[int(contents.group(1))][1]):
                if font:
                    cmap = fonts[font]
                    continue
                raw = _unescape(string)
                codes = (int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw) - 1, 2))
                lines.append("".join(cmap.get(code, "\ufffd") for code in codes))
    return lines


def pdf_text(pdf: bytes) -> str:
    return "\n".join(pdf_lines(pdf))
