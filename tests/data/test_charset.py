"""Pages whose declared charset is wrong or missing (charset.py): after extraction, the text of each
broken page equals the text of the same page served correctly, and the stats count how each page's
charset was decided."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from lmforge.data.charset import codec_name, decode_html, declared_charset, utf8_sequences
from lmforge.data.executors import run_pipeline
from lmforge.data.pipeline import build_pipeline

# Written for this test. 镕 is in GBK but not in GB2312 (a page declared gb2312 is decoded as GBK, as browsers do).
ZH = ["今天早上，小城的集市比往常热闹。卖菜的老人把新鲜的白菜和萝卜摆得整整齐齐，孩子们围着糖画摊看师傅画龙。",
      "图书馆新开了一间阅览室，每天下午都有学生在那里复习功课。老师说：“读书要有耐心，也要有好奇心。”",
      "河边的柳树发了新芽，几位退休工人沿着步道慢慢散步，聊起当年在钢厂镕铸铁水的日子，也聊今年的收成和天气。",
      "镇政府计划在秋天修好通往山村的公路，让村里的苹果、梨和核桃更快运到城里，卖个好价钱。"]
EN = ["The café on Rue Delambre reopened on Monday. “We missed the regulars,” said Zoë, the owner, while she "
      "poured coffee for a naïve tourist who’d wandered in from the rain — déjà vu, she called it.",
      "The façade was repainted over the winter; the old piñata still hangs above the counter… Prices are in € "
      "and £, and the menu’s new smörgåsbord section has crème brûlée, a gâteau and a jalapeño omelette.",
      "Regulars say the place hasn’t changed: the same chairs, the same jokes, the same “très bien” from the "
      "waiter who has worked there since 1987 and still won’t tell anyone his age."]


def html(paragraphs: list[str], meta: str = "") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!DOCTYPE html><html><head>{meta}<title>Notes</title></head><body><nav><a href='/'>Home</a></nav>"
            f"<article><h1>Notes</h1>{body}</article><footer>Contact</footer></body></html>")


def double_encoded(text: str) -> str:
    """Text a CMS stored after reading its UTF-8 as windows-1252 ("cafÃ©", "â€™")."""
    import ftfy.bad_codecs  # noqa: F401  (registers sloppy-windows-1252)

    return text.encode("utf-8").decode("sloppy-windows-1252")


def damaged(data: bytes) -> bytes:
    """UTF-8 with 8 invalid bytes in the article, each before a space (so no character is cut)."""
    start = data.find(b"<p>")
    spaces = [i for i in range(start, len(data)) if data[i] == 0x20][::5][:8]
    out = bytearray(data)
    for i in reversed(spaces):
        out.insert(i, 0xFF)
    return bytes(out)


META_UTF8, META_LATIN1, META_GB2312 = ('<meta charset="utf-8">', '<meta charset="iso-8859-1">',
                                      '<meta http-equiv="Content-Type" content="text/html; charset=gb2312">')


def page(paragraphs: list[str], meta: str, encoding: str, content_type: str, twin: str | None, how: str,
         codec: str, stored: list[str] | None = None) -> tuple:
    """(the HTML as it should decode, its bytes as served, Content-Type, the correctly served page whose
    text it must extract to, how the charset is decided, the codec); `stored`: what the page holds."""
    return (html(paragraphs, meta), html(stored or paragraphs, meta).encode(encoding), content_type, twin, how, codec)


PAGES = {
    "zh": page(ZH, META_UTF8, "utf-8", "text/html; charset=utf-8", "zh", "declared", "utf-8"),
    "en": page(EN, META_UTF8, "utf-8", "text/html; charset=utf-8", "en", "declared", "utf-8"),
    "zh_gbk_undeclared": page(ZH, "", "gbk", "text/html", "zh", "detected", "gb18030"),
    "zh_utf8_declared_latin1": page(ZH, META_LATIN1, "utf-8", "text/html; charset=ISO-8859-1", "zh", "detected",
                                    "utf-8"),
    "en_utf8_declared_latin1": page(EN, META_LATIN1, "utf-8", "text/html; charset=ISO-8859-1", "en", "detected",
                                    "utf-8"),
    "en_cp1252_declared_utf8": page(EN, META_UTF8, "cp1252", "text/html; charset=utf-8", "en", "detected", "cp1252"),
    "en_cp1252_undeclared": page(EN, "", "cp1252", "text/html", "en", "detected", "cp1252"),
    "zh_gbk_declared_gb2312": page(ZH, META_GB2312, "gbk", "text/html", "zh", "declared", "gb18030"),
    "zh_double_encoded": page(ZH, META_UTF8, "utf-8", "text/html; charset=utf-8", "zh", "repaired", "utf-8",
                              stored=[double_encoded(p) for p in ZH]),
    "en_double_encoded": page(EN, META_UTF8, "utf-8", "text/html; charset=utf-8", "en", "repaired", "utf-8",
                              stored=[double_encoded(p) for p in EN]),
}
DAMAGED = damaged(html(EN + ZH, META_UTF8).encode())


@pytest.mark.parametrize("name", PAGES)
def test_how_each_page_is_decoded(name):
    expected, body, content_type, _, how, codec = PAGES[name]
    decoded = decode_html(body, content_type)
    assert (decoded.how, decoded.encoding) == (how, codec)
    assert decoded.text == expected


def test_damaged_utf8_is_decoded_as_utf8_with_replacement_characters():
    decoded = decode_html(DAMAGED, "text/html; charset=utf-8")
    assert (decoded.how, decoded.encoding, decoded.text.count("\ufffd")) == ("replaced", "utf-8", 8)
    assert decoded.text.replace("\ufffd", "") == html(EN + ZH, META_UTF8)


def test_declarations_and_labels():
    assert codec_name("ISO-8859-1") == codec_name("ascii") == "cp1252"       # as browsers read them
    assert codec_name("GB2312") == codec_name("gbk") == "gb18030"
    assert codec_name("no-such-charset") is None
    assert declared_charset(b"<meta charset='koi8-r'>", "text/html; charset=UTF-8") == "utf-8"   # the header wins
    assert declared_charset(b'<?xml version="1.0" encoding="Shift_JIS"?><html>', "") == "cp932"
    assert declared_charset(b"<html>", "text/html") is None
    # an unknown label is no declaration: the bytes decide
    assert decode_html("<p>café</p>".encode(), "text/html; charset=x-unknown").how == "detected"
    # a byte-order mark decides before any declaration
    assert decode_html(b"\xef\xbb\xbf<p>caf\xc3\xa9</p>", "text/html; charset=iso-8859-1").text == "<p>café</p>"
    assert utf8_sequences("é€\ufffd".encode() + b"\xff") == (3, 1)


def write_warc(path: Path) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    served = [(name, body, content_type) for name, (_, body, content_type, *_) in PAGES.items()]
    for name, body, content_type in served + [("en_damaged_utf8", DAMAGED, "text/html; charset=utf-8")]:
        http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(f"https://example.com/{name}", "response",
                                                      payload=io.BytesIO(body), http_headers=http))
    path.write_bytes(buf.getvalue())


def test_broken_pages_extract_to_the_text_of_the_page_served_right(tmp_path):
    (tmp_path / "crawl").mkdir()
    write_warc(tmp_path / "crawl" / "pages.warc.gz")
    out = tmp_path / "out"
    data = {"pipeline": {"input": str(tmp_path / "crawl"), "output": str(out), "input_format": "warc", "tasks": 1},
            "stage": [{"name": "format", "steps": [{"step": "extract"}, {"step": "encoding"}]}]}
    run_pipeline(build_pipeline(data, "test"), log=lambda *_: None)
    texts = {json.loads(line)["url"].rsplit("/", 1)[1]: json.loads(line)["text"]
             for f in sorted((out / "format").glob("*.jsonl.gz")) for line in gzip.open(f, "rt", encoding="utf-8")}
    assert "Zoë" in texts["en"] and "镕铸" in texts["zh"]
    for name, (_, _, _, twin, _, _) in PAGES.items():
        assert texts[name] == texts[twin], name
    assert "en_damaged_utf8" not in texts                      # U+FFFD: the encoding rule drops it
    stats = json.loads(next((out / "_stats" / "format").glob("*.json")).read_text())
    assert stats["drops"] == {"encoding": {"encoding_errors": 1}}
    counts = {k: v for k, v in stats["extra"].items() if k.startswith("charset_")}
    assert counts == {"charset_declared": 3, "charset_detected": 5, "charset_repaired": 2, "charset_replaced": 1}


# One sentence per language, written for this test, served without a declaration in a legacy charset.
OTHER_LANGUAGES = {
    "pl": ("Wczoraj w Krakowie padał śnieg, a dzieci lepiły bałwana przed szkołą. Pani Małgorzata powiedziała, "
           "że to najpiękniejszy dzień zimy.", ("cp1250", "iso8859-2")),
    "ru": ("Вчера в Москве шёл снег, и дети лепили снеговика перед школой. Это был самый красивый день зимы.",
           ("cp1251", "koi8-r")),
    "ja": ("昨日は東京で雪が降り、子どもたちは学校の前で雪だるまを作りました。冬で一番美しい日でした。", ("cp932", "euc_jp")),
    "ko": ("어제 서울에는 눈이 내렸고 아이들은 학교 앞에서 눈사람을 만들었습니다. 겨울 중 가장 아름다운 날이었습니다.", ("cp949",)),
    "zh-Hant": ("昨天臺北下了大雨，孩子們在學校前面玩水。這是今年夏天最涼快的一天。", ("big5hkscs",)),
    "de": ("Gestern schneite es in München, und die Kinder bauten vor der Schule einen Schneemann. Es war der "
           "schönste Tag des Winters – für alle Größen.", ("cp1252",)),
}


@pytest.mark.parametrize("language,encoding", [(lang, enc) for lang, (_, encs) in OTHER_LANGUAGES.items()
                                               for enc in encs])
def test_undeclared_legacy_charsets_of_other_languages(language, encoding):
    page_html = f"<p>{OTHER_LANGUAGES[language][0]}</p>"
    decoded = decode_html(page_html.encode(encoding), "text/html")
    assert (decoded.text, decoded.encoding, decoded.how) == (page_html, encoding, "detected")
