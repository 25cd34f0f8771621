"""Bytes and headers to text for the charsets people really send, mislabelled ones included.

A declared charset is trusted only when the bytes decode with it; unknown aliases
(``iso-gb2312``), missing labels and 8-bit headers without a label are detected with
charset-normalizer. Nothing here raises on bad input: the worst case is a replacement
character, and the caller is told which charset was used.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import itertools
import re
import unicodedata

from charset_normalizer import from_bytes

#: Labels mail clients use that Python does not know, or knows as a narrower charset.
ALIASES = {
    "iso-gb2312": "gb18030", "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "gb_2312-80": "gb18030",
    "csgb2312": "gb18030", "chinese": "gb18030", "euc-cn": "gb18030", "x-euc-cn": "gb18030", "cn-gb": "gb18030",
    "big5": "big5hkscs", "x-big5": "big5hkscs",
    "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949", "euc-kr": "cp949", "ks_c_5601-1989": "cp949",
    "shift_jis": "cp932", "shift-jis": "cp932", "x-sjis": "cp932", "sjis": "cp932", "windows-31j": "cp932",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "iso8859-1": "cp1252", "iso_8859-1": "cp1252",
    "us-ascii": "ascii", "ansi_x3.4-1968": "ascii", "ascii": "ascii",
    "iso-8859-8-i": "iso-8859-8", "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874", "x-mac-cyrillic": "mac_cyrillic", "x-mac-roman": "mac_roman", "macintosh": "mac_roman",
    "unicode-1-1-utf-7": "utf-7", "x-unicode-2-0-utf-7": "utf-7", "utf7": "utf-7",
    "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8", "x-unicode20utf8": "utf-8", "utf-8-sig": "utf-8",
    "koi8r": "koi8-r", "koi8u": "koi8-u", "cp-1251": "cp1251", "win-1251": "cp1251", "x-cp1251": "cp1251",
    "x-cp1250": "cp1250", "cp-1250": "cp1250",
}
#: Labels that tell nothing about the bytes.
UNKNOWN = {"", "unknown", "unknown-8bit", "x-unknown", "default", "default_charset", "8bit", "binary", "none", "charset"}

_LABEL_JUNK = re.compile(r"^(?:3d|2d)", re.IGNORECASE)  # "charset=3Dutf-8": a quoted-printable encoded header


def codec_for(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when unknown or meaningless."""
    name = (label or "").strip().strip("\"'").strip().lower()
    name = _LABEL_JUNK.sub("", name) if not codec_exists(name) else name
    if name in UNKNOWN:
        return None
    name = ALIASES.get(name, name)
    return name if codec_exists(name) else None


def codec_exists(name: str) -> bool:
    try:
        codecs.lookup(name)
        return True
    except (LookupError, ValueError):
        return False


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """``data`` as text, and the charset actually used (``declared`` when it fits)."""
    if not data:
        return "", codec_for(declared) or "ascii"
    codec = codec_for(declared)
    ascii_only = data.isascii()
    if codec == "utf-7" or (codec is None and ascii_only and b"+" in data and _looks_utf7(data)):
        try:
            return data.decode("utf-7"), "utf-7"
        except UnicodeDecodeError:
            pass
    if ascii_only:
        if b"\x1b" in data and codec in (None, "ascii"):
            codec = "iso-2022-jp"  # 7-bit Japanese sent without a label
        if codec not in (None, "ascii"):
            try:
                return data.decode(codec), codec  # 7-bit charsets (iso-2022-jp, hz) need their codec
            except (UnicodeDecodeError, LookupError):
                if codec == "iso-2022-jp":
                    return decode_iso2022jp_ms(data), "cp50220"
        return data.decode("ascii"), codec or "ascii"
    if codec in ("ascii", "cp1252", "iso-8859-15") or codec is None:
        # The commonest mislabel: UTF-8 bytes declared as ASCII or Latin-1, or not declared at all.
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    if codec not in (None, "ascii"):
        try:
            return data.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            pass
    return detect(data, fallback=codec if codec != "ascii" else None)


#: Charsets tried for unlabelled 8-bit bytes, most likely first (our customers write ru, pl, en, de).
CANDIDATES = ("cp1251", "cp1250", "koi8-r", "iso-8859-2", "cp1252", "gb18030", "cp932")
_WORD = re.compile(r"[^\W\d_]+")
_TYPOGRAPHY = set("«»„“”‘’‚–—…€№°©®™•·×")


def detect(data: bytes, fallback: str | None = None) -> tuple[str, str]:
    """Guess the charset of unlabelled ``data`` (a body or an 8-bit header).

    Short texts defeat statistical detectors (six bytes of Cyrillic look like Chinese to
    them), so every likely charset is tried and the decoding that reads most like words
    wins: one script per word, sane letter case, no control characters or box drawing.
    charset-normalizer is asked too, and its answer is judged by the same measure.
    """
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    order = ([fallback] if fallback and fallback not in CANDIDATES else []) + list(CANDIDATES)
    if fallback in CANDIDATES:
        order.remove(fallback)
        order.insert(0, fallback)
    tried: list[tuple[float, int, str, str]] = []
    for rank, charset in enumerate(order):
        try:
            text = data.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
        penalty = implausibility(text, data if charset == "gb18030" else None) + (charset == "cp932")
        tried.append((penalty, rank, text, charset))
    if len(data) > 64:
        best = from_bytes(data).best()
        if best is not None and best.encoding:
            text = str(best)
            tried.append((implausibility(text), len(order), text, best.encoding))
    if tried:
        _, _, text, charset = min(tried)
        return text, charset
    charset = fallback or "cp1252"
    return data.decode(charset, errors="replace"), charset


def implausibility(text: str, gb_bytes: bytes | None = None) -> float:
    """How little ``text`` looks like human writing (0 = perfectly plausible)."""
    penalty = 0.0
    for ch in text:
        if ch in "\t\n\r" or ch.isascii():
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Co", "Cn", "Cs") or ch == "\ufffd":
            penalty += 5
        elif "\uff61" <= ch <= "\uff9f":  # half-width katakana: what Cyrillic bytes become in Shift_JIS
            penalty += 1
        elif category[0] in "SP" and ch not in _TYPOGRAPHY and category not in ("Pd", "Ps", "Pe"):
            penalty += 2
    for word in _WORD.findall(text):
        scripts = {_script(ch) for ch in word}
        if len(scripts) > 1:
            penalty += 3
        if any(a.islower() and b.isupper() for a, b in itertools.pairwise(word)):
            penalty += 2
        if scripts == {"latin"} and len(word) >= 3 and sum(not c.isascii() for c in word) * 2 > len(word):
            penalty += 2
        if "greek" in scripts or "other" in scripts:
            penalty += 1
    if gb_bytes is not None:
        penalty += 2 * _rare_gb_characters(gb_bytes) + 1
    return penalty


def _rare_gb_characters(data: bytes) -> int:
    """Double-byte GB characters outside the 3755 common ones (lead byte 0xB0-0xD7)."""
    rare, i = 0, 0
    while i < len(data):
        if data[i] >= 0x81 and i + 1 < len(data):
            rare += not (0xB0 <= data[i] <= 0xD7 and data[i + 1] >= 0xA1) and not (0xA1 <= data[i] <= 0xA9)
            i += 2
        else:
            i += 1
    return rare


def _script(ch: str) -> str:
    if ch.isascii():
        return "latin"
    name = unicodedata.name(ch, "")
    for script in ("LATIN", "CYRILLIC", "CJK", "GREEK", "HIRAGANA", "KATAKANA", "HANGUL"):
        if name.startswith(script) or f" {script} " in f" {name} ":
            return script.lower() if script in ("LATIN", "CYRILLIC", "CJK", "GREEK") else "cjk"
    if "FULLWIDTH" in name or "IDEOGRAPH" in name:
        return "cjk"
    return "other"


_ISO2022_ESCAPE = re.compile(rb"\x1b(\$[@B]|\([BJI])")


def decode_iso2022jp_ms(data: bytes) -> str:
    """ISO-2022-JP as Microsoft writes it (CP50220): JIS X 0208 plus the NEC rows (circled
    digits, Roman numerals) that strict ISO-2022-JP lacks; decoded through Shift_JIS (cp932)."""
    out: list[str] = []
    mode = b"(B"
    pos = 0
    for match in [*_ISO2022_ESCAPE.finditer(data), None]:
        chunk = data[pos : match.start() if match else len(data)]
        if mode in (b"$@", b"$B"):
            sjis = bytearray()
            for j1, j2 in zip(chunk[0::2], chunk[1::2]):
                s1 = (j1 + 1) // 2 + (0x70 if j1 <= 0x5E else 0xB0)
                s2 = j2 + (0x1F if j1 % 2 else 0x7E)
                sjis += bytes((s1, s2 + (1 if j1 % 2 and s2 >= 0x7F else 0)))
            out.append(bytes(sjis).decode("cp932", errors="replace"))
        elif mode == b"(I":
            out.append(bytes(b | 0x80 for b in chunk).decode("cp932", errors="replace"))
        else:
            out.append(chunk.decode("ascii", errors="replace"))
        if match:
            mode, pos = match.group(1), match.end()
    return "".join(out)


def _looks_utf7(data: bytes) -> bool:
    return re.search(rb"\+[A-Za-z0-9/]{3,}-", data) is not None


# -- headers ---------------------------------------------------------------------------------
_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([QqBb])\?([^?]*?)\?=")


def decode_header_value(value: str | bytes | None, hint: str | None = None) -> str:
    """A header as text: RFC 2047 words decoded (broken ones too), raw 8-bit bytes detected.

    ``value`` is the raw header (a ``str`` holding surrogate-escaped bytes, as the stdlib
    parser keeps them, or bytes); ``hint`` is a charset to try first for unlabelled 8-bit
    bytes (the message body's charset).
    """
    if value is None:
        return ""
    # a str holds surrogate-escaped raw bytes, or text the stdlib already decoded (kept as UTF-8)
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    raw = re.sub(rb"\r?\n[ \t]", b" ", raw).replace(b"\r", b"").replace(b"\n", b"")
    if not raw.isascii():
        text = _decode_8bit_header(raw, hint)
    else:
        text = raw.decode("ascii")
    if "=?" not in text:
        return text.strip()
    return _decode_encoded_words(text).strip()


def _decode_encoded_words(text: str) -> str:
    """Decode RFC 2047 words; adjacent words of one charset are joined as bytes first,
    since senders split multi-byte characters across words."""
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_label: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending, pending_label
        if pending_label is not None:
            out.append(decode_bytes(bytes(pending), pending_label)[0])
        pending, pending_label = bytearray(), None

    for match in _ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        label = match.group(1).split("*")[0]  # RFC 2231 language suffix: =?utf-8*en?Q?...?=
        data = _word_bytes(match.group(2).upper(), match.group(3))
        if data is None:
            flush()
            out.append(between + match.group(0))
        else:
            if between.strip():
                flush()
                out.append(between)
            elif pending_label is not None and label.lower() != pending_label.lower():
                flush()  # whitespace between two encoded words is never text (RFC 2047 6.2)
            elif pending_label is None:
                out.append(between)  # whitespace between text and the first word stays
            pending += data
            pending_label = label
        pos = match.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        return _b64(payload.replace(" ", "")) if encoding == "B" else _qp_word(payload)
    except ValueError:
        return None


def _decode_8bit_header(raw: bytes, hint: str | None) -> str:
    codec = codec_for(hint)
    return detect(raw, fallback=codec if codec not in ("ascii", "utf-8") else None)[0]


def _b64(payload: str) -> bytes:
    cleaned = re.sub(r"[^A-Za-z0-9+/]", "", payload)
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


def _qp_word(payload: str) -> bytes:
    out = bytearray()
    i = 0
    data = payload.encode("ascii", "surrogateescape")
    while i < len(data):
        c = data[i]
        if c == 0x5F:  # "_" is a space in Q encoding
            out.append(0x20)
        elif c == 0x3D and re.fullmatch(rb"[0-9A-Fa-f]{2}", data[i + 1 : i + 3]):
            out.append(int(data[i + 1 : i + 3], 16))
            i += 2
        else:
            out.append(c)
        i += 1
    return bytes(out)

