"""Which text encoding a file of JSON lines is in: josh writes UTF-8, but a file passed through an editor or a
Windows tool may come with a byte-order mark, or as UTF-16. Every reader of such files sniffs it here."""

from __future__ import annotations

import codecs

_ASCII_TEXT = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def sniff_encoding(head: bytes) -> tuple[str, int, str | None]:
    """From a file's first (up to) 4 bytes: its codec, the length of its byte-order mark, and how to name the
    encoding to the user when it is not UTF-8 (None for UTF-8, with or without a mark)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3, None
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2, "UTF-16 (little-endian, with a byte-order mark)"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2, "UTF-16 (big-endian, with a byte-order mark)"
    # No mark: ASCII text read as UTF-16 has a NUL byte beside every character.
    if len(head) >= 4 and head[1] == head[3] == 0 and head[0] in _ASCII_TEXT and head[2] in _ASCII_TEXT:
        return "utf-16-le", 0, "UTF-16 (little-endian)"
    if len(head) >= 4 and head[0] == head[2] == 0 and head[1] in _ASCII_TEXT and head[3] in _ASCII_TEXT:
        return "utf-16-be", 0, "UTF-16 (big-endian)"
    return "utf-8", 0, None
