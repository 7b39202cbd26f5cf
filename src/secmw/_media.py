"""How a client reads a response body: its media type, coding and text encoding.

The redactor scans text byte by byte as UTF-8; these helpers decide which bodies
are text a client may read (and so must be scanned), which are compressed or in
an encoding whose secrets are not ASCII bytes (and so cannot be), reading the
headers and first bytes as browsers and HTTP clients do.
"""

from __future__ import annotations

import codecs
import functools
import json
import re

# Types a client reads as text besides text/*: these bodies are scanned.
_TEXTUAL_SUFFIXES = ("+json", "+xml", "+yaml")
_TEXTUAL = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/jsonl",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/x-ecmascript",
        "multipart/form-data",
        "multipart/mixed",
        "multipart/related",
        "multipart/alternative",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/graphql-response+json",
        "application/x-jsonlines",
        "application/ndjson",
        "application/json-seq",
        "application/x-pem-file",
        # Key and certificate files as mimetypes names them (.pem, .key, .crt, .asc).
        "application/pem-certificate-chain",
        "application/pgp-keys",
        "application/pgp-signature",
        "application/pgp-encrypted",
        "application/x-x509-ca-cert",
        "application/x-x509-user-cert",
        # Scripts and mail (.rb, .pl, .php, .tcl, .csh, .eml, .mht).
        "application/x-ruby",
        "application/x-perl",
        "application/x-php",
        "application/x-httpd-php",
        "application/x-tcl",
        "application/x-csh",
        "application/x-python",
        "message/rfc822",
        "message/http",
        "application/mbox",
        # Backups (.bak, .old, name~: the ".env.bak" leak) and more scripts (.coffee, .dart).
        "application/x-trash",
        "application/vnd.coffeescript",
        "application/vnd.dart",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/x-sh",
        "application/sql",
    }
)


def media_type(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None, int | None]:
    """The body's media type, its coding (``None`` for identity) and its length.

    Every field line counts: a second ``Content-Encoding: identity`` must not hide
    a first ``gzip``, nor a second ``Content-Type`` a textual first one. Codings
    of ``Transfer-Encoding`` other than ``chunked`` count as well. Text in
    UTF-16 or UTF-32 counts as encoded: its ASCII secrets cannot be found as bytes.
    """
    media = encoding = None
    length: int | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-type":
            parsed = _essence(value.decode("latin-1"))
            if media is None or (not is_textual(media) and is_textual(parsed)):
                media = parsed
            wide = _wide_charset(value) if b"=" in value else None
            if wide is not None:
                encoding = encoding or f"charset {wide}"
        elif lowered in (b"content-encoding", b"transfer-encoding"):
            # A transfer coding other than chunked (gzip, chunked) compresses the
            # bytes on the wire just the same: a client decodes it before reading.
            for coding in value.decode("latin-1").lower().split(","):
                stripped = coding.strip()
                if stripped and stripped not in ("identity", "chunked"):
                    encoding = encoding or stripped
        elif lowered == b"content-length" and value.isdigit() and len(value) <= 18:
            length = int(value)
    return media, encoding, length


_MIME_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+")


@functools.lru_cache(maxsize=256)  # an app answers with a handful of values
def _essence(value: str) -> str:
    """The media type a client may read a ``Content-Type`` value as; ``""`` for none.

    Browsers read a comma-separated list (two headers joined) by its last valid
    item and sniff a value that is no valid type (``application/ json``), so a
    list with any textual or invalid item counts as that, and an invalid value as
    no type: both are scanned, never passed as binary. Commas inside quoted
    parameters do not split, and only HTTP whitespace is trimmed (a no-break
    space makes a type invalid, as it does for browsers).
    """
    items = [item.split(";", 1)[0].strip(_HTTP_WHITESPACE).lower() for item in _list_items(value)]
    if len(items) == 1:
        return items[0] if _valid_type(items[0]) else ""
    if not all(map(_valid_type, items)):
        return ""
    # A JSON item is redacted as JSON (escapes decoded) whichever item a client goes by.
    for item in items:
        if names_json(item):
            return item
    for item in items:
        if is_textual(item):
            return item
    return items[-1]


_HTTP_WHITESPACE = " \t\r\n"


def _list_items(value: str) -> list[str]:
    """The items of a comma-separated value; a comma inside a quoted string does not split."""
    if '"' not in value:
        return value.split(",")
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return items


def _valid_type(item: str) -> bool:
    # Fetch skips "*/*" as no type as well (the body is sniffed).
    return item != "*/*" and _MIME_TYPE.fullmatch(item) is not None


# Charsets whose text cannot be scanned byte by byte: UTF-16/32 and their WHATWG
# labels (exact names: "unicode-1-1-utf-8" and "unicode11utf8" are UTF-8), and any
# codec Python knows (clients in Python decode with it) that does not write the
# characters of secrets as their ASCII bytes: utf_16le, u16, utf-7, EBCDIC, ...
_WIDE_PREFIXES = ("utf-16", "utf-32", "utf16", "utf32", "ucs-4", "ucs4")
_WIDE_LABELS = frozenset(
    {"unicode", "unicodefeff", "unicodefffe", "csunicode", "iso-10646-ucs-2", "ucs-2", "ucs2"}
)
_ASCII_SAFE = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1"})
# Secrets' characters, and escapes some codecs decode (raw_unicode_escape, utf-7)
# or swallow (the shift sequences of the stateful ISO-2022 codecs).
_PROBE = "azAZ09+/=_-.:~ \n\"'{}\\u0073\\x73+AGE-\x1b(B\x1b$B\x0e\x0f"
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def wide_text(raw: bytes, media: str | None) -> bool:
    """Whether a body's first bytes are UTF-16/32 text, which is not scannable byte by byte.

    Clients honour a BOM whatever the type; JSON (``json.loads``) and XML parsers
    (from ``<?xml``) also detect UTF-16/32 without one, from the NULs around the
    first ASCII character, and so may a client of an untyped body (``.json()``).
    An untyped body counts only when its start decodes to printable text that
    way (a binary file's does not); other declared types that start with a NUL
    are binary.
    """
    if raw.startswith(_WIDE_BOMS):
        return True
    if not (raw[:1] == b"\x00" or raw[1:2] == b"\x00"):
        return False
    encoding = json.detect_encoding(raw)
    if media:
        return media.endswith(_SELF_DESCRIBING) and encoding != "utf-8"
    if encoding == "utf-8":
        return False
    unit = 4 if "32" in encoding else 2
    sample = raw[: min(len(raw), _SNIFF) // unit * unit]
    try:
        text = sample.decode(encoding)
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char.isspace() for char in text)


def undecided(raw: bytes, media: str | None) -> bool:
    """Whether a stream's first bytes are too few to tell UTF-16/32 text (:func:`wide_text`).

    Held only while they could be: a byte-order mark's start, the first byte of
    JSON, XML or an untyped body (UTF-16LE shows in the second), a NUL among the
    first two until four bytes tell UTF-16 from UTF-32, and for an untyped body
    until there is enough of it to decode.
    """
    if any(bom.startswith(raw) and bom != raw for bom in _WIDE_BOMS):
        return True
    if media and not media.endswith(_SELF_DESCRIBING):
        return False
    if len(raw) < 2:
        return True
    if raw[:1] == b"\x00" or raw[1:2] == b"\x00":
        return len(raw) < (4 if media else _SNIFF)  # UTF-16 or UTF-32 shows in four
    return False


# Types whose parsers detect UTF-16/32 without a BOM, and how much of an untyped
# body is decoded to tell text from binary.
_SELF_DESCRIBING = ("/json", "+json", "/xml", "+xml")
_SNIFF = 64


def _wide_charset(value: bytes) -> str | None:
    """A charset among the parameters of a Content-Type in which ASCII is not ASCII bytes.

    Clients disagree on how to read the parameters: the header is split at every
    ";", quoted or not, as requests does, which finds every ``charset=`` a reading
    that honours quotes (RFC 9110) finds too, and more. An RFC 2231 ``charset*``
    parameter (httpx reads it) and a label no charset is that long count as
    unscannable too.
    """
    for piece in value.decode("latin-1").split(";")[1:]:
        key, equals, label = piece.partition("=")
        if not equals:
            continue
        label = label.strip().strip("\"'")
        name = key.strip().lower()
        if name.startswith("charset*"):
            return f"{name} (RFC 2231)"
        if name != "charset":
            continue
        charset = label.strip().lower()
        if charset in _ASCII_SAFE:
            continue
        if (
            len(charset) > _LONGEST_LABEL
            or charset in _WIDE_LABELS
            or charset.startswith(_WIDE_PREFIXES)
            or not _ascii_compatible(charset)
        ):
            return charset[:_LONGEST_LABEL]
    return None


# Registered charset names are at most 40 characters; longer labels are refused
# rather than looked up (Python folds runs of punctuation: "utf----16le" is UTF-16).
_LONGEST_LABEL = 64


@functools.lru_cache(maxsize=256)
def _ascii_compatible(charset: str) -> bool:
    """True unless Python has a text codec of that name that writes ASCII differently."""
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):
        return True  # no client decodes it as text either
    if not getattr(info, "_is_text_encoding", True):
        return True  # base64_codec, rot13 and the like: not charsets a client applies
    ascii_probe = _PROBE.encode("ascii")
    try:
        encoded = info.encode(_PROBE)[0]
        decoded = info.decode(ascii_probe)[0]
    except (UnicodeError, ValueError, TypeError):
        return False
    return encoded.removeprefix(codecs.BOM_UTF8) == ascii_probe and decoded == _PROBE


def is_textual(media: str | None) -> bool:
    """Whether a client may read a body of this media type as text (no type: it may)."""
    if media is None or untyped(media):
        # No usable Content-Type: a client may sniff the body as text, so it is scanned.
        return True
    return (
        media.startswith("text/")
        or media in _TEXTUAL
        or media.endswith(_TEXTUAL_SUFFIXES)
        or names_json(media)
    )


def untyped(media: str | None) -> bool:
    """No usable ``Content-Type`` (missing, invalid, ``unknown/unknown``): clients sniff it."""
    return not media or "/" not in media or media == "unknown/unknown"


def names_json(media: str) -> bool:
    """Any JSON flavour (``application/x-json``, ``x-amz-json-1.1``, ``json5``,
    ``geo+json-seq``): clients read such a body as JSON text."""
    return "json" in media.partition("/")[2]


__all__ = ["is_textual", "media_type", "names_json", "undecided", "untyped", "wide_text"]
