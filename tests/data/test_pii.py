"""PII masking (WanJuan-CC masks personal data; docs/papers.md §4): recall on positives of each type,
precision against look-alikes that must survive (dates, versions, prices, ISBNs, years, order numbers)."""

from __future__ import annotations

import re

import pytest

from lmforge.config import RecipeError
from lmforge.data.document import Document
from lmforge.data.pii import (PLACEHOLDERS, MaskPII, chinese_id_check_char, ip_is_personal, is_card,
                              is_chinese_id, luhn_ok, mask_pii)
from lmforge.data.pipeline import build_pipeline
from lmforge.data.step import TaskStats

# (type, sentence, the value in it that must become the type's placeholder)
POSITIVES = [
    ("email", "Contact jane.doe@example.com for details.", "jane.doe@example.com"),
    ("email", "邮箱：zhang_san123@163.com，欢迎来信。", "zhang_san123@163.com"),
    ("email", "Write to <john+news@mail.example.co.uk>.", "john+news@mail.example.co.uk"),
    ("email", "mailto:support@sub.domain-name.org", "support@sub.domain-name.org"),
    ("email", "Her address is Anna.Schmidt@uni-heidelberg.de.", "Anna.Schmidt@uni-heidelberg.de"),
    ("email", "QQ邮箱13812345678@qq.com已注册", "13812345678@qq.com"),
    ("email", "Reach me at jane [at] example [dot] com", "jane [at] example [dot] com"),
    ("phone", "Call +1 (415) 555-2671 after nine.", "+1 (415) 555-2671"),
    ("phone", "London office: +44 20 7946 0958", "+44 20 7946 0958"),
    ("phone", "London office: +44 (0)20 7946 0958.", "+44 (0)20 7946 0958"),
    ("phone", "联系电话 +86 138 0013 8000", "+86 138 0013 8000"),
    ("phone", "WhatsApp +8613800138000 any time", "+8613800138000"),
    ("phone", "Berlin: +49-30-1234567", "+49-30-1234567"),
    ("phone", "Paris +33 1 23 45 67 89, ask for Luc", "+33 1 23 45 67 89"),
    ("phone", "Tokyo +81 3-1234-5678", "+81 3-1234-5678"),
    ("phone", "Phone (415) 555-2671 or fax.", "(415) 555-2671"),
    ("phone", "Call 415-555-2671 today", "415-555-2671"),
    ("phone", "Call 415.555.2671 today", "415.555.2671"),
    ("phone", "Toll free 1-800-555-0199.", "1-800-555-0199"),
    ("phone", "手机：13800138000", "13800138000"),
    ("phone", "电话139-1234-5678，白天打", "139-1234-5678"),
    ("phone", "call 138 0013 8000 now", "138 0013 8000"),
    ("phone", "北京大学 010-62751234", "010-62751234"),
    ("phone", "深圳 0755-86013388 转 8", "0755-86013388"),
    ("phone", "上海 (021) 64371234", "(021) 64371234"),
    ("phone", "热线400-820-6688", "400-820-6688"),
    ("phone", "Ring 020 7946 0958 in London", "020 7946 0958"),
    ("phone", "Büro 030 12345678", "030 12345678"),
    ("phone", "Tél. 01 23 45 67 89", "01 23 45 67 89"),
    ("phone", "Handy 0176-12345678", "0176-12345678"),
    ("phone", "Ring 02079460958 in London", "02079460958"),
    ("phone", "call 555-0100 for the desk", "555-0100"),
    ("ip", "Login from 192.168.1.23 failed", "192.168.1.23"),
    ("ip", "the server at 10.0.0.5 is down", "10.0.0.5"),
    ("ip", "Connected from 66.249.66.1.", "66.249.66.1"),
    ("ip", "my IP is 203.0.114.45", "203.0.114.45"),
    ("ip", "gateway 172.16.254.1", "172.16.254.1"),
    ("ip", "open http://192.168.0.1/admin in a browser", "192.168.0.1"),
    ("ip", "address 192.168.1.5/24 on eth0", "192.168.1.5"),
    ("ip", "IP地址：114.80.166.240", "114.80.166.240"),
    ("ip", "host 2a00:1450:4001:82b::200e answered", "2a00:1450:4001:82b::200e"),
    ("ip", "full form 2406:da14:0e59:0000:0000:8a2e:0370:7334", "2406:da14:0e59:0000:0000:8a2e:0370:7334"),
    ("ip", "link-local fe80::1ff:fe23:4567:890a%eth0", "fe80::1ff:fe23:4567:890a%eth0"),
    ("ip", "mapped ::ffff:59.66.12.128 here", "::ffff:59.66.12.128"),
    ("ip", "curl http://[2408:8207:1850::1]:8080/", "2408:8207:1850::1"),
    ("card", "Card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
    ("card", "Card 4111-1111-1111-1111.", "4111-1111-1111-1111"),
    ("card", "Mastercard 5500000000000004", "5500000000000004"),
    ("card", "Amex 3782 822463 10005", "3782 822463 10005"),
    ("card", "Discover 6011111111111117", "6011111111111117"),
    ("card", "JCB 3566002020360505", "3566002020360505"),
    ("card", "银联卡号6212345678901232", "6212345678901232"),
    ("card", "银联卡 6225881234567890120", "6225881234567890120"),
    ("card", "Diners 30569309025904", "30569309025904"),
    ("card", "MC 2223003122003222", "2223003122003222"),
    ("id", "身份证号：11010519491231002X", "11010519491231002X"),
    ("id", "身份证 11010519491231002x 复印件", "11010519491231002x"),
    ("id", "证件号码440308199901011234", "440308199901011234"),
    ("id", "ID 310104198503174521 on file", "310104198503174521"),
    ("id", "身份证号码为510107200012290671。", "510107200012290671"),
    ("id", "(650102197806053816)", "650102197806053816"),
]

NEGATIVES = [
    # dates and times
    "Published 2024-03-15.", "Due 15/03/2024", "Due 03/15/2024", "Posted 2024.03.15", "Am 15.03.2024 geschlossen",
    "2024年3月15日发布", "Build date 20240315", "Timestamp 2024-03-15T10:30:00Z", "Mon, 15 Mar 2024 10:30:00 GMT",
    "from 2024-03-15 to 2024-04-01", "Open 09:00-18:00", "at 10:30:45 sharp", "lap 12:30:45.123",
    "Unix time 1710460800", "1710460800123 ms",
    # versions and sections
    "Upgrade to version 1.2.3.4 now", "Download v1.2.3.4", "Version: 4.1.2.10", "release 2.0.1.3 notes",
    "build 10.0.19041.1", "Python 3.12.1", "Chrome 122.0.6261.94", "firmware 1.0.2.7", "版本 5.1.0.2",
    "see section 3.2.1.4", "§ 1.2.3.4 of the act", "Ubuntu 22.04.3 LTS", "numpy==1.26.4",
    # prices and amounts
    "Only $1,299.99!", "售价¥3999", "Price € 12.50", "USD 1,000,000", "£19.99 each", "仅需 1999 元",
    "Save $250.00 today", "Rp 1.250.000.000", "Total: 13,800,138,000 yuan", "1.380.013.800 Kč",
    # ISBNs, product and order numbers
    "ISBN 978-3-16-148410-0", "ISBN 0-306-40615-2", "ISBN-13: 9783161484100", "EAN 4006381333931",
    "SKU 1234567812345670", "Order #112-7654321-1234567", "Order No. 2024031512345678",
    "订单号：202403151234567890", "Invoice INV-2024-000123", "Tracking 1Z999AA10123456784", "Ticket #4821-339",
    "UUID 550e8400-e29b-41d4-a716-446655440000", "Part 0-8044-2957-X", "CVE-2024-21412",
    # years and plain numbers
    "in 1999", "the years 1990-2024", "the years 1990–2024", "the 1980s", "population 1411750000", "42",
    "123456789", "3.14159265", "1,234,567", "0.001", "0.123456789", "1e-10", "π ≈ 3.141592653589793", "0.5 0.25 0.125",
    "RFC 3339 and ISO 8601", "aspect ratio 16:9", "won 3-1", "40.7128, -74.0060", "1.2.3", "(0) 12 34",
    # technical text
    "C++ std::vector<int>", "Ruby Foo::Bar", "MAC 00:1A:2B:3C:4D:5E", "icon logo@2x.png", "follow @username",
    "user@localhost", "localhost is 127.0.0.1", "listen on 0.0.0.0:8080", "broadcast 255.255.255.255",
    "netmask 255.255.255.0", "route 10.0.0.0/8 and 192.168.0.0/16", "DNS 8.8.8.8 or 1.1.1.1", "loopback ::1",
    "example 192.0.2.1 and 2001:db8::8a2e:370:7334", "mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0",
    "Teredo is 2001::/32", "pad it as +000000120", "color #FF5733", "a :: b", "SHA 3f786850e387550fdab836ed7e6dc881de23001b",
    # known false positives: a bare version without a version word; an 11-digit serial shaped like a
    # mobile; two-digit groups after a 0, written as French phone numbers are
    "Changelog: 2.0.1.3 fixes the login bug", "Serial no. 15012345678", "lines 01 02 03 04 05",
]

# What the patterns do not catch or wrongly catch, on purpose (pii.py's docstring says why).
KNOWN_MISSES = {"jane [at] example [dot] com", "02079460958", "555-0100"}
KNOWN_FALSE_POSITIVES = {"Changelog: 2.0.1.3 fixes the login bug", "Serial no. 15012345678", "lines 01 02 03 04 05"}
PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))


def evaluate() -> dict:
    """Item-level recall over POSITIVES and precision over every placeholder written."""
    tp, missed, false_pos, wrong = 0, [], [], 0
    per_type = {kind: [0, 0] for kind in PLACEHOLDERS}
    for kind, sentence, value in POSITIVES:
        assert value in sentence, value
        out = mask_pii(sentence)[0]
        per_type[kind][1] += 1
        if out == sentence.replace(value, PLACEHOLDERS[kind]):
            tp += 1
            per_type[kind][0] += 1
        else:
            missed.append(value)
            wrong += len(PLACEHOLDER_RE.findall(out))   # a placeholder of the wrong type or span
    for sentence in NEGATIVES:
        out = mask_pii(sentence)[0]
        if out != sentence:
            false_pos.append(sentence)
            wrong += len(PLACEHOLDER_RE.findall(out))
    return {"recall": tp / len(POSITIVES), "precision": tp / (tp + wrong), "missed": missed,
            "false_positives": false_pos, "per_type_recall": {k: a / n for k, (a, n) in per_type.items()}}


def test_recall_and_precision_on_the_fixtures():
    result = evaluate()
    assert set(result["missed"]) == KNOWN_MISSES, result["missed"]
    assert set(result["false_positives"]) == KNOWN_FALSE_POSITIVES, result["false_positives"]
    assert len(POSITIVES) >= 60 and len(NEGATIVES) >= 90
    assert result["recall"] >= 0.95 and result["precision"] >= 0.95, result
    assert all(r >= 0.85 for r in result["per_type_recall"].values()), result["per_type_recall"]


def test_check_digits_and_validators():
    assert chinese_id_check_char("11010519491231002") == "X"        # the GB 11643-1999 example
    assert is_chinese_id("11010519491231002X") and not is_chinese_id("110105194912310021")
    assert not is_chinese_id("110105199902300021")                   # 30 February
    assert not is_chinese_id("991234198501011234")                   # no province 99
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")     # Luhn's textbook example
    assert is_card("4111 1111 1111 1111") and not is_card("1234567812345670")  # Luhn-valid, no issuer
    assert not is_card("4111111111111112")
    assert not ip_is_personal("127.0.0.1") and not ip_is_personal("255.255.255.0")
    assert not ip_is_personal("10.0.0.0", "8") and ip_is_personal("10.0.0.7", "8")
    assert ip_is_personal("192.168.1.1") and ip_is_personal("8.26.56.26") and ip_is_personal("fe80::1")
    assert not ip_is_personal("2001::", "32") and not ip_is_personal("ffff:ffff:ffff:ffff::")


def test_mixed_text_keeps_context_and_counts_each_type():
    text = ("Mail a.b@example.org or call +1 415-555-2671; server 10.1.2.3, card 4111111111111111, "
            "身份证11010519491231002X. Released 2024-03-15 as version 1.2.3.4 for $19.99.")
    out, counts = mask_pii(text)
    assert out == ("Mail <EMAIL> or call <PHONE>; server <IP>, card <CARD>, 身份证<ID>. "
                   "Released 2024-03-15 as version 1.2.3.4 for $19.99.")
    assert counts == {"email": 1, "phone": 1, "ip": 1, "card": 1, "id": 1}
    assert mask_pii(text, ["email"])[0].count("<") == 1


def test_step_keeps_pages_and_counts_replacements_in_stats():
    stats = TaskStats("clean", 0)
    step = MaskPII().bind(stats)
    docs = [Document("write to a@example.com or b@example.com", id="1"), Document("nothing here 2024", id="2"),
            Document("手机13800138000", id="3")]
    out = list(step.run(docs))
    assert [d.id for d in out] == ["1", "2", "3"] and out[0].text == "write to <EMAIL> or <EMAIL>"
    assert stats.extra == {"pii_docs": 2, "pii_email": 2, "pii_phone": 1}
    assert not stats.drops and stats.to_dict()["extra"]["pii_email"] == 2


def test_recipe_names_the_step_and_refuses_unknown_types():
    data = {"pipeline": {"input": "in", "output": "out"},
            "stage": [{"name": "clean", "steps": [{"step": "pii", "types": ["email", "ip"]}]}]}
    assert build_pipeline(data, "recipes/x.toml").stages[0].steps[0].types == ["email", "ip"]
    data["stage"][0]["steps"][0]["types"] = ["emial"]
    message = r"recipes/x.toml: stage\[0\].steps\[0\].types = \['emial'\]: unknown PII type"
    with pytest.raises(RecipeError, match=message):
        build_pipeline(data, "recipes/x.toml")


def test_real_text_without_personal_data_is_left_alone():
    """Shakespeare, People's Daily (1998) and the Python reference hold dates, numbers, versions and
    addresses in examples but no personal data: nothing may be masked in them."""
    from lmforge.data.real_text import lines

    for source in ("shakespeare", "people_daily", "pydoc"):
        masked = [line for line in lines(source, "eval") if mask_pii(line)[1]]
        assert not masked, (source, masked[:3])
