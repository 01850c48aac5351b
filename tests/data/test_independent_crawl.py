"""The demo recipe on a crawl that the demo generator did not write (issue #20).

The demo crawl's truth shows each step at work on pages made by the same module that plants the
cases; this fixture is written by hand instead: its own articles (English and Chinese, written for
this test), served in a WARC.gz built here with warcio, one record per gzip member as Common Crawl
writes them. It holds every case of issue #20: a 404 and a 301 with article bodies, a GBK page
without a charset declaration, a UTF-8 page declared Latin-1, a page of e-mail addresses, phone
numbers and IP addresses, a banned word in a URL, a subdomain of a listed domain, and one gzip
member damaged on purpose. recipes/data-demo.toml runs on it up to the quality stage and each page
is checked where it should end, with the reason, the decoded text and the masked values.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from lmforge.data.executors import run_pipeline
from lmforge.data.pipeline import build_pipeline
from lmforge.data.report import build_report

from tests.data.conftest import DEMO_RECIPE, demo_recipe

LIBRARY = [
    "The Harbourtown public library opened its doors again on Monday morning, eight months after a winter "
    "storm tore a hole in the roof above the reading room.",
    "Builders replaced the old slate with a lighter roof and added a row of windows along the north wall, so "
    "the room is now brighter than it has been for decades. The librarians spent the last two weeks carrying "
    "the books back from a school gym where they had been stored in boxes.",
    "On the first day more than three hundred people came through the door. Children sat on the new carpet "
    "for a story hour, and a group of older readers asked when the local history collection would return. "
    "It will be back on the shelves by the end of the month.",
    "The council paid for most of the work, but a fund started by a retired teacher raised enough money for "
    "new chairs and a small cafe near the entrance. She said the town had missed having a quiet place to sit "
    "and read, and that she was glad to see it full again.",
]
MIGRATION = [
    "Every October the marshes south of the river fill with birds that are passing through on their way to "
    "warmer places, and this year the numbers were higher than usual.",
    "On a cold and clear morning we counted more than two thousand geese in the first hour. They arrived in "
    "long lines from the north, called loudly over the reeds, and landed in the shallow water near the old "
    "pump house. Later in the day smaller birds moved along the hedges in mixed flocks.",
    "A good pair of binoculars helps, but patience matters more. If you stand still near the edge of the "
    "water for twenty minutes, the birds that flew off when you arrived will usually come back, and you "
    "will see far more than someone who walks quickly along the path.",
    "The best weeks are usually the second and third of the month. Bring warm clothes, a flask of tea and a "
    "notebook, and write down what you see: the records that walkers keep are how we know the counts have "
    "changed over the years.",
]
METRO = [
    "本市地铁六号线西段于昨日上午正式开通运营，沿线十二个车站同时迎来了第一批乘客。",
    "新线路全长约二十一公里，连接城西的几个大型居住区和市中心的商业街。许多住在西郊的市民说，过去上班要换乘两次公交车，"
    "路上需要一个多小时，现在坐地铁只要三十五分钟就能到单位。",
    "为了方便老年人和带孩子的家庭出行，每个车站都设置了无障碍电梯，站台上也增加了座椅。运营公司表示，开通初期的发车间隔为"
    "六分钟，早晚高峰时段将缩短到四分钟，以后还会根据客流情况进行调整。",
    "不少沿线商户也对新线路充满期待。一位在车站附近经营面馆的老板说，开通第一天店里的客人就比平时多了一倍，他准备再招两名"
    "服务员。",
]
TEA = [
    "清明前后，杭州西湖周边的茶园进入了一年中最忙碌的采摘季节。",
    "天刚亮，茶农们就背着竹篓上了山。采茶是一件需要耐心的工作，只能摘下一芽一叶或者一芽两叶，手法太重会伤到茶树。一位"
    "在茶园工作了三十多年的老人告诉记者，一个熟练的采茶人一天也只能采到两三斤鲜叶。",
    "采下的鲜叶要在当天送到作坊里炒制。炒茶师傅把鲜叶放进温度很高的铁锅，用手不停地翻炒、按压，整个过程要持续好几个小时。"
    "炒好的茶叶颜色翠绿，香气清新，是许多人每年都在等待的味道。",
    "今年春天雨水充足，气温也比较平稳，茶叶的品质比去年更好。不过由于人工成本上涨，新茶的价格也略有提高。",
]
MUSEUM = [  # served as GBK without any declaration
    "市博物馆新建的陶瓷展厅本周末向公众开放，展出了三百多件从唐代到清代的瓷器。",
    "展厅按照时代顺序布置，观众可以看到瓷器的颜色和花纹是怎样一步一步发生变化的。其中最受欢迎的是一只宋代的青瓷碗，"
    "它的颜色像雨后的天空一样干净，讲解员说这是博物馆最珍贵的藏品之一。",
    "为了让孩子们更好地了解传统工艺，博物馆还在展厅旁边开设了一间体验教室，小朋友可以在老师的指导下自己动手做一个小陶杯。"
    "周末的名额已经全部约满，下个月还会增加新的场次。",
]
CAFE = [  # UTF-8 bytes served with a Latin-1 declaration
    "Le Petit Four opened last spring in a narrow shop on Mill Street, and it has already become the place "
    "where the town’s early risers meet for coffee before work.",
    "The menu is short. There is a very good café crème, a plain croissant that shatters when you bite it, "
    "and a crème brûlée that the owner, Zoë Martin, makes every morning at six. A breakfast for two costs "
    "about €14, which is fair for the quality.",
    "Some of the décor is a little naïve, with paper flowers and hand-painted signs, but the room is warm and "
    "the staff remember your order after the second visit. It is the kind of small place that a street "
    "needs, and we hope it stays for a long time.",
]
LETTERS = [  # personal data: every value below must be masked by the pii step
    "The letters page had a busy week after our story about the new bus timetable, and we print a selection "
    "of the replies below.",
    "A reader from the east side wrote to anna.kowalski@harbour-mail.org to say that the early bus now leaves "
    "five minutes before her shift ends. She asked the council to call her back on +44 20 7946 0871 and has "
    "not yet had an answer.",
    "Another reader complained that the online form kept failing. He sent us the error page, which showed "
    "that his requests came from 81.2.69.142 and were blocked as spam. The council later told us the filter "
    "had been too strict and would be changed.",
    "You can reach the transport office at timetables@harbourtown-council.org or by phone on "
    "(415) 555-2671 during office hours. Please keep your letters short, and tell us which route you use.",
]
PII = {"email": ["anna.kowalski@harbour-mail.org", "timetables@harbourtown-council.org"],
       "phone": ["+44 20 7946 0871", "(415) 555-2671"], "ip": ["81.2.69.142"]}
SOUP = [
    "A winter soup does not need a long list of ingredients. Onions, carrots, a few potatoes and a good "
    "stock are enough to make a meal that will warm the whole family.",
    "Cut the vegetables into small pieces and soften the onions in butter for ten minutes. Add the rest, "
    "cover with stock and let it simmer until the potatoes are soft. Blend half of the soup and stir it "
    "back in, so that it is thick but still has some texture.",
    "Serve it with fresh bread and a little cheese. The soup keeps well for three days in the fridge, and "
    "many people think it tastes even better on the second day.",
]
FERRY = [
    "The old ferry that crossed the bay for sixty years made its last trip on Sunday afternoon, with the "
    "mayor and a crowd of former passengers on board.",
    "The boat will be replaced by a bridge that opens next week. Many people in the town said they were "
    "sad to see it go, because the short crossing was part of their daily life for so long.",
    "The ferry will be moored at the harbour museum, where visitors will be able to walk around the deck "
    "and see the engine room from next summer.",
]
MARKET = [
    "The Saturday market moved to the square in front of the town hall this weekend, after the old car park "
    "was closed for building work.",
    "Traders said the new place is better for business because more people walk past it. The market now has "
    "forty stalls, selling fruit, cheese, bread, flowers and second-hand books.",
    "It opens at eight in the morning and closes at two in the afternoon, and the council says it will stay "
    "in the square at least until the end of the year.",
]

HOST = "https://www.harbourtown-courier.org"
# (name, url, status, paragraphs, bytes encoding, Content-Type charset, <meta> charset)
PAGES = [
    ("library", f"{HOST}/2026/04/library-reopens.html", 200, LIBRARY, "utf-8", "utf-8", "utf-8"),
    ("metro", "https://www.xian-wanbao.com.cn/news/2026/0412/metro.html", 200, METRO, "utf-8", "utf-8", "utf-8"),
    ("lost", f"{HOST}/2026/04/lost-in-a-corrupt-member.html", 200, MARKET, "utf-8", "utf-8", "utf-8"),
    ("migration", "https://blog.fieldnotes-birding.net/posts/autumn-migration.html", 200, MIGRATION,
     "utf-8", "utf-8", "utf-8"),
    ("not_found", f"{HOST}/2026/03/old-ferry.html", 404, FERRY, "utf-8", "utf-8", "utf-8"),
    ("museum_gbk", "https://www.xian-wanbao.com.cn/news/2026/0415/museum.html", 200, MUSEUM, "gbk", "", ""),
    ("moved", f"{HOST}/2026/03/market.html", 301, MARKET, "utf-8", "utf-8", "utf-8"),
    ("cafe_latin1", "https://www.mill-street-review.eu/reviews/le-petit-four.html", 200, CAFE, "utf-8",
     "iso-8859-1", "iso-8859-1"),
    ("letters", f"{HOST}/2026/04/letters.html", 200, LETTERS, "utf-8", "utf-8", "utf-8"),
    ("banned_word", "https://www.citylights-guide.net/nsfw/winter-soup.html", 200, SOUP, "utf-8", "utf-8", "utf-8"),
    ("blocked_subdomain", "https://sports.bet365.com/blog/winter-soup.html", 200, SOUP, "utf-8", "utf-8", "utf-8"),
    ("tea", "https://www.hangzhou-richang.cn/life/tea-harvest.html", 200, TEA, "utf-8", "utf-8", "utf-8"),
]
GOOD = ["library", "metro", "migration", "museum_gbk", "cafe_latin1", "letters", "tea"]
DROPPED_AT_FORMAT = {"not_found": ("http_status", "http_404"), "moved": ("http_status", "http_301"),
                     "banned_word": ("url_filter", "url_word:nsfw"),
                     "blocked_subdomain": ("url_filter", "url_domain:bet365.com")}
STATUS = {200: "200 OK", 301: "301 Moved Permanently", 404: "404 Not Found"}


def html(title: str, paragraphs: list[str], meta_charset: str) -> str:
    meta = f'<meta charset="{meta_charset}">' if meta_charset else ""
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!DOCTYPE html><html><head>{meta}<title>{title}</title></head><body>"
            f"<nav><a href=\"/\">Home</a> <a href=\"/news\">News</a></nav>"
            f"<main><article><h1>{title}</h1>\n{body}\n</article></main>"
            f"<footer><p>Copyright 2026. All rights reserved.</p></footer></body></html>")


def member(record_of) -> bytes:
    """One WARC record as its own gzip member."""
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    writer.write_record(record_of(writer))
    return buf.getvalue()


def write_crawl(folder: Path) -> tuple[Path, int, int]:
    """The WARC.gz with the member of page "lost" damaged; returns its path and that member's [start, end)."""
    from warcio.statusandheaders import StatusAndHeaders

    members = [member(lambda w: w.create_warcinfo_record("independent.warc.gz", {"software": "hand-written"}))]
    for name, url, status, paragraphs, encoding, header_charset, meta_charset in PAGES:
        body = html(name.replace("_", " ").title(), paragraphs, meta_charset).encode(encoding)
        headers = [("Content-Type", f"text/html; charset={header_charset}" if header_charset else "text/html")]
        if status == 301:
            headers.append(("Location", url.replace("/market.html", "/saturday-market.html")))
        http = StatusAndHeaders(STATUS[status], headers, protocol="HTTP/1.1")
        members.append(member(lambda w: w.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                             http_headers=http)))
    lost = 1 + [p[0] for p in PAGES].index("lost")
    start = sum(map(len, members[:lost]))
    end = start + len(members[lost])
    data = b"".join(members)
    at = (start + end) // 2  # inside the deflate stream
    data = data[:at] + bytes(b ^ 0x5A for b in data[at:at + 8]) + data[at + 8:]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "independent.warc.gz"
    path.write_bytes(data)
    return path, start, end


def read_stage(run: Path, stage: str) -> dict[str, dict]:
    return {json.loads(line)["url"]: json.loads(line) for f in sorted((run / stage).glob("*.jsonl.gz"))
            for line in gzip.open(f, "rt", encoding="utf-8")}


def stage_stats(run: Path, stage: str) -> dict:
    (stats,) = [json.loads(p.read_text()) for p in (run / "_stats" / stage).glob("*.json")]
    return stats


URL = {p[0]: p[1] for p in PAGES}
TEXT = {p[0]: p[3] for p in PAGES}


@pytest.fixture(scope="module")
def independent_run(tmp_path_factory) -> tuple[Path, Path, int, int]:
    root = tmp_path_factory.mktemp("independent")
    path, start, end = write_crawl(root / "crawl")
    # a truth file in the demo's schema, so that `lmforge data report` scores this crawl too
    truth = [{"url": URL[name], "kind": name, "expected": "format" if name in DROPPED_AT_FORMAT else "keep",
              "group": "", "jaccard": None} for name, *_ in PAGES if name != "lost"]
    (root / "crawl" / "truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in truth))
    out = root / "data"
    data = demo_recipe(root / "crawl", out, stages=["format", "clean", "dedup", "safe", "quality"],
                       tasks=1, workers=1)
    run_pipeline(build_pipeline(data, str(DEMO_RECIPE)), log=lambda *_: None)
    return out, path, start, end


def test_the_corrupt_member_is_counted_and_the_records_after_it_read(independent_run):
    out, path, start, end = independent_run
    stats = stage_stats(out, "format")
    assert stats["extra"]["warc_gzip_members_skipped"] == 1
    assert stats["extra"]["warc_gzip_bytes_skipped"] == end - start
    assert [(e["file"], e["offset"]) for e in stats["errors"]] == [(str(path), start)]
    assert stats["docs_in"] == len(PAGES) - 1
    kept = read_stage(out, "format")
    assert URL["lost"] not in kept
    after = [p[0] for p in PAGES[[p[0] for p in PAGES].index("lost") + 1:] if p[0] in GOOD]
    assert after and all(URL[name] in kept for name in after)


def test_non_pages_and_filtered_urls_are_dropped_at_format_with_their_reason(independent_run):
    out = independent_run[0]
    drops = {d["url"]: (d["step"], d["reason"]) for f in (out / "_drops" / "format").glob("*.gz")
             for d in map(json.loads, gzip.open(f, "rt"))}
    assert drops == {URL[name]: why for name, why in DROPPED_AT_FORMAT.items()}


def test_good_pages_are_kept_with_their_text_decoded_right(independent_run):
    out = independent_run[0]
    docs = read_stage(out, "format")
    assert set(docs) == {URL[name] for name in GOOD}
    for name in GOOD:
        text = docs[URL[name]]["text"]
        assert all(p in text for p in TEXT[name]), name
        assert "\ufffd" not in text and "Ã" not in text, name
    counts = {k: v for k, v in stage_stats(out, "format")["extra"].items() if k.startswith("charset_")}
    assert counts["charset_detected"] == 2          # the GBK page and the UTF-8 page declared Latin-1


def test_personal_data_is_masked_and_the_page_kept(independent_run):
    out = independent_run[0]
    text = read_stage(out, "clean")[URL["letters"]]["text"]
    for kind, values in PII.items():
        assert all(v not in text for v in values), kind
        assert text.count(f"<{kind.upper()}>") == len(values), kind
    extra = stage_stats(out, "clean")["extra"]
    assert (extra["pii_email"], extra["pii_phone"], extra["pii_ip"], extra["pii_docs"]) == (2, 2, 1, 1)


def test_good_pages_pass_clean_dedup_and_safe_and_the_report_scores_the_crawl(independent_run):
    out = independent_run[0]
    good = {URL[name] for name in GOOD}
    for stage in ("clean", "dedup", "safe"):
        assert set(read_stage(out, stage)) == good, stage
    truth = build_report(out)["truth"]
    assert truth["stages"]["format"] == {"dropped": 4, "planted": 4, "correct": 4, "precision": 1.0,
                                         "recall": 1.0, "planted_dropped_elsewhere": 0}
    assert all(truth["kinds"][name] == {"format": 1} for name in DROPPED_AT_FORMAT)


@pytest.mark.xfail(strict=True, reason="the advertisement model (en threshold 0.95) drops two of the four English "
                   "articles written for this crawl: library 0.86, letters 0.945 (docs/data.md)")
def test_good_pages_survive_the_quality_stage(independent_run):
    out = independent_run[0]
    drops = {d["url"]: d["reason"] for f in (out / "_drops" / "quality").glob("*.gz")
             for d in map(json.loads, gzip.open(f, "rt"))}
    assert drops == {}, drops
