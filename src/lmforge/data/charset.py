"""Crawled HTML bytes -> text: the declared charset checked against the bytes, detection, mojibake repair.

Paper: WanJuan-CC, arXiv 2402.19282, stage 1 ("format"), which extracts text from Common Crawl's
WARC bytes; docs/papers.md §4. The paper does not say how it decodes them; this is the project's.

A declaration is often wrong or missing: GBK/GB2312 pages served without one, UTF-8 bytes declared
as Latin-1 or windows-1252, windows-1252 bytes declared as UTF-8. Decoding with the declaration
alone gives mojibake ("cafÃ©", "ä¸­æ–‡") or a page of U+FFFD that the encoding rule then drops.
One decision per page, in this order; `how` is what the WARC reader counts (`charset_<how>`):

    declared   a byte-order mark; else the declaration (HTTP Content-Type, else <meta charset> or an
               XML declaration in the first 2 KB), with labels mapped as browsers map them (WHATWG
               Encoding: latin-1 and ascii are windows-1252, gb2312 and gbk are gb18030), when the
               bytes decode under it strictly and do not contradict it.
    detected   the declaration is missing, unknown, fails to decode the bytes, or is a legacy charset
               while the bytes are valid UTF-8 with non-ASCII characters (real windows-1252 or GBK
               text is practically never valid UTF-8: it would need pairs such as "Ã©" throughout):
               valid UTF-8 is UTF-8; otherwise charset-normalizer's guess among the charsets the web
               uses (`WEB_CHARSETS`), and only a guess whose decoded text is not a mess (chaos <=
               `MAX_CHAOS`); among near-equal guesses the one whose text fits a language better,
               then the one the web uses more (windows-1252 English reads as cheaply as cp1257).
    repaired   decoded as above, then changed by ftfy.fix_encoding: mojibake the page itself holds
               (text double-encoded by its CMS, "â€™" served as valid UTF-8). ftfy fixes it only when
               re-encoding gives a clearly better text; fix_text's other fixes (quotes, full-width
               characters, HTML entities) would change correct text and are not used.
    replaced   nothing decodes cleanly: UTF-8 with a few invalid bytes (valid multi-byte sequences
               at least twice the invalid ones: damaged UTF-8, not another charset), or no coherent
               guess; decoded with U+FFFD for the bad bytes, which the encoding rule counts.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

CHARSET_RE = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.I)
XML_DECL_RE = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9_\-:.]+)""", re.I)
# Labels browsers decode with a superset (WHATWG Encoding Standard's label table, the cases that matter).
WHATWG_LABELS = {
    **dict.fromkeys(("iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii",
                     "cp819", "ibm819", "windows-1252", "x-cp1252"), "cp1252"),
    **dict.fromkeys(("gb2312", "gbk", "x-gbk", "gb_2312-80", "chinese", "csgb2312", "iso-ir-58"), "gb18030"),
    **dict.fromkeys(("shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "windows-31j"), "cp932"),
    **dict.fromkeys(("euc-kr", "ks_c_5601-1987", "korean", "windows-949"), "cp949"),
    **dict.fromkeys(("iso-8859-9", "latin5", "windows-1254"), "cp1254"),
    **dict.fromkeys(("tis-620", "iso-8859-11", "windows-874"), "cp874"),
    "big5": "big5hkscs",
    # A page whose <meta> could be read as ASCII is not UTF-16 (WHATWG: such a declaration means UTF-8).
    **dict.fromkeys(("utf-16", "utf-16le", "utf-16be", "utf-32"), "utf-8"),
}
BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# What detection may answer, most used on the web first (W3Techs' charset survey): the order breaks
# near-ties, where a rarer charset decodes the bytes as plausibly as a common one.
WEB_CHARSETS = ("utf-8", "cp1252", "gb18030", "cp932", "cp1251", "cp949", "euc_jp", "big5hkscs", "cp1250",
                "iso8859-2", "cp1256", "cp1254", "cp1253", "cp1255", "cp874", "iso8859-15", "koi8-r",
                "cp1258", "cp1257")
MAX_CHAOS = 0.1    # charset-normalizer's mess ratio above which a guess is not trusted
CHAOS_TIE = 0.02   # guesses within this of the best one count as equally good
HOWS = ("declared", "detected", "repaired", "replaced")


@dataclass
class Decoded:
    text: str
    encoding: str   # the Python codec the text was decoded with
    how: str        # one of HOWS


def codec_name(label: str) -> str | None:
    """A charset label as a Python codec name, mapped as browsers map it; None for an unknown label."""
    label = label.strip().lower()
    try:
        return codecs.lookup(WHATWG_LABELS.get(label, label)).name
    except LookupError:
        return None


def declared_charset(body: bytes, content_type: str = "") -> str | None:
    """The charset the HTTP header, else the page's first 2 KB, declares (a codec name), or None."""
    m = (CHARSET_RE.search(content_type.encode("latin-1", "ignore")) or XML_DECL_RE.search(body[:2048])
         or CHARSET_RE.search(body[:2048]))
    return codec_name(m.group(1).decode("ascii")) if m else None


def decode_html(body: bytes, content_type: str = "") -> Decoded:
    """Decode a page's bytes (module docstring: declared, detected, repaired, replaced)."""
    for bom, encoding in BOMS:
        if body.startswith(bom):
            return _repair(Decoded(body[len(bom):].decode(encoding, "replace"), encoding, "declared"))
    declared = declared_charset(body, content_type)
    utf8 = _strict(body, "utf-8")
    if utf8 is not None and (declared in (None, "utf-8") or not body.isascii()):
        return _repair(Decoded(utf8, "utf-8", "declared" if declared == "utf-8" else "detected"))
    if declared is not None and declared != "utf-8":
        text = _strict(body, declared)
        if text is not None:
            return _repair(Decoded(text, declared, "declared"))
    valid, invalid = utf8_sequences(body)
    if valid >= 2 * invalid:
        return Decoded(body.decode("utf-8", "replace"), "utf-8", "replaced")
    guess = detect_charset(body)
    text = _strict(body, guess) if guess is not None else None
    if text is not None:
        return _repair(Decoded(text, guess, "detected"))
    fallback = declared or "utf-8"
    return Decoded(body.decode(fallback, "replace"), fallback, "replaced")


def detect_charset(body: bytes) -> str | None:
    """charset-normalizer's guess among `WEB_CHARSETS`, near-ties broken by web usage; None when no
    charset decodes the bytes into coherent text."""
    import charset_normalizer

    # (its own threshold applies to each chunk it samples; MAX_CHAOS to the whole text)
    results = charset_normalizer.from_bytes(body, cp_isolation=list(WEB_CHARSETS), preemptive_behaviour=False)
    # A match stands for every charset that decodes the bytes to the same text (could_be_from_charset).
    guesses = [(codecs.lookup(name).name, m.chaos, m.coherence) for m in results if m.chaos <= MAX_CHAOS
               for name in m.could_be_from_charset]
    guesses = [g for g in guesses if g[0] in WEB_CHARSETS]
    if not guesses:
        return None
    best = min(chaos for _, chaos, _ in guesses)
    # among near-equal guesses: the more coherent text (its letters' frequencies fit a language
    # better: euc_jp over cp949 for Japanese), then the charset the web uses more
    near = [g for g in guesses if g[1] <= best + CHAOS_TIE]
    return max(near, key=lambda g: (round(g[2], 2), -WEB_CHARSETS.index(g[0])))[0]


def utf8_sequences(body: bytes) -> tuple[int, int]:
    """(valid multi-byte UTF-8 sequences, invalid bytes) in `body`."""
    text = body.decode("utf-8", "replace")
    invalid = text.count("\ufffd") - body.count(b"\xef\xbf\xbd")   # a U+FFFD the page holds is valid
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return non_ascii - invalid, invalid


def _strict(body: bytes, encoding: str) -> str | None:
    try:
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _repair(decoded: Decoded) -> Decoded:
    if decoded.text.isascii():
        return decoded
    import ftfy

    fixed = ftfy.fix_encoding(decoded.text)
    if fixed != decoded.text:
        return Decoded(fixed, decoded.encoding, "repaired")
    return decoded
