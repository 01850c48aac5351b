"""Personal data masking: e-mail addresses, phone numbers, IP addresses, card numbers, Chinese ID numbers.

Paper: WanJuan-CC, arXiv 2402.19282, which masks personal information in the crawl it releases;
docs/papers.md §4. The paper names no rule set, so the types and patterns below are this project's.

Each match is replaced by a typed placeholder (`<EMAIL>`, `<PHONE>`, `<IP>`, `<CARD>`, `<ID>`); the
page is kept, and the step counts replacements per type in the task's stats (`pii_email`, ...,
`pii_docs` for pages with at least one). Precision matters as much as recall: a pipeline that
turns dates, versions, prices or ISBNs into `<PHONE>` damages the text it means to protect, so
every pattern is anchored on boundaries and checked by a validator where one exists:

    e-mail   local@domain.tld (TLD of letters); `logo@2x.png` (retina asset names) is not an address
    phone    +CC international (a country code does not start with 0; 8-15 digits, E.164's
             maximum); NANP (NXX) NXX-XXXX with one kind of separator; Chinese mobiles
             1[3-9]XXXXXXXXX (11 digits, or 3-4-4 grouped) and landlines 0XX(X)-XXXXXXX(X); other
             national numbers with a leading 0: area code and subscriber number, or 3-5 groups
             joined by one kind of separator, 9-12 digits. Slashes never join a phone number
             (15/03/2024 is a date), and a number that runs on into more digits or letters is not
             a phone number.
    ip       IPv4: four octets 0-255 without leading zeros, not inside a longer dotted run; IPv6:
             what `ipaddress` accepts, with at least one decimal digit (`a::b` in code is a name).
    card     14-19 digits (contiguous, or 4-4-4-4(-3), 4-6-5, 4-6-4) with a known issuer's prefix and
             length (Visa 16/19, Mastercard, Amex, Discover, JCB, UnionPay, Diners, Maestro 16-19)
             and a valid Luhn check digit: Luhn alone passes one random number in ten.
    id       the 18-character Chinese resident ID: a province code, a real birth date (1800-2099),
             and the ISO 7064 MOD 11-2 check character. The 15-digit IDs issued before 1999 are not
             masked (no check digit to tell them from order numbers).

IPv4 addresses are masked whether public or private (a private address in a router's log or a
forum post still points at someone's network), except those that name no one's host: the
unspecified network 0.0.0.0/8, loopback 127.0.0.0/8, the broadcast 255.255.255.255, netmasks
(255.255.255.0, ffff:ffff::), a network written with its prefix and zero host bits (10.0.0.0/8: a range, not a
host), the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24; RFC 5737) and a few
public DNS resolvers (8.8.8.8, 1.1.1.1, ...) that tutorials quote. IPv6 keeps `::`, `::1` and
2001:db8::/32 (RFC 3849) for the same reasons; link-local fe80:: addresses are masked (their interface id is often
derived from the device's MAC address).

A version string such as 1.2.3.4 is indistinguishable from an IPv4 address by its shape. The rule:
a dotted quad preceded by a letter (`v1.2.3.4`) or by a version/section word ("version", "ver.",
"v", "release", "build", "firmware", "rev", "update", "patch", "section", "§", "chapter", "版本")
is kept; any other dotted quad whose octets are all <= 255 is masked. A bare version number
without such a word ("upgrade 2.0.1.3 fixes ...") is therefore masked: a lost version number costs
less than a leaked address.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from lmforge.data.document import Document
from lmforge.data.step import Step

PII_TYPES = ("email", "phone", "ip", "card", "id")
PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>", "card": "<CARD>", "id": "<ID>"}

# ---- e-mail ------------------------------------------------------------------------------------

EMAIL_RE = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
                      r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![A-Za-z0-9-])")
FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "avif"})

# ---- Chinese resident ID -----------------------------------------------------------------------

CHINESE_ID_RE = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
                           r"\d{3}[0-9Xx](?![0-9A-Za-z])")
# Province-level codes (GB/T 2260); 71 Taiwan, 81 Hong Kong, 82 Macao, 83 Taiwan residence permits.
PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                       50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83})
ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]  # ISO 7064 MOD 11-2: 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2


def chinese_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of a Chinese resident ID."""
    s = sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS))
    value = (12 - s % 11) % 11
    return "X" if value == 10 else str(value)


def is_chinese_id(s: str) -> bool:
    if len(s) != 18 or not s[:17].isdigit() or int(s[:2]) not in PROVINCES:
        return False
    try:
        datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return chinese_id_check_char(s[:17]) == s[17].upper()


# ---- cards -------------------------------------------------------------------------------------

CARD_RE = re.compile(r"(?<![0-9A-Za-z.,-])(?:\d{14,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?"
                     r"|\d{4}([ -])\d{6}\2\d{4,5})(?![0-9A-Za-z]|[.,-]\d)")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_issuer_ok(d: str) -> bool:
    """Does the number start with a card issuer's prefix, at a length that issuer uses?"""
    n, p2, p3, p4 = len(d), int(d[:2]), int(d[:3]), int(d[:4])
    if d[0] == "4":
        return n in (16, 19)                         # Visa (13-digit cards are no longer issued)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16                               # Mastercard
    if p2 in (34, 37):
        return n == 15                               # American Express
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649:
        return 16 <= n <= 19                         # Discover
    if 3528 <= p4 <= 3589 or p2 == 62:
        return 16 <= n <= 19                         # JCB, UnionPay
    if p2 in (36, 38, 39) or 300 <= p3 <= 305:
        return 14 <= n <= 16                         # Diners Club
    if p2 in (50, 56, 57, 58, 63, 67):
        return 16 <= n <= 19                         # Maestro
    return False


def is_card(number: str) -> bool:
    digits = re.sub(r"[ -]", "", number)
    return card_issuer_ok(digits) and luhn_ok(digits)


# ---- IP addresses ------------------------------------------------------------------------------

OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4_RE = re.compile(rf"(?<![0-9A-Za-z.]){OCTET}(?:\.{OCTET}){{3}}(?![0-9A-Za-z]|\.\d)")
PREFIX_AFTER_RE = re.compile(r"/(\d{1,3})(?!\d)")
IPV6_RE = re.compile(r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?"
                     r"(?:%[0-9A-Za-z._-]+)?(?![0-9A-Za-z:])")
VERSION_BEFORE_RE = re.compile(r"(?:\b(?:version|ver|v|release|rel|build|firmware|fw|rev|revision|update|patch|"
                               r"section|sec|chapter|clause|item|step|figure|fig|table)|§|版本号?|第)"
                               r"\s*[.:#=]?\s*$", re.I)
PUBLIC_RESOLVERS = frozenset({"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
                              "208.67.222.222", "208.67.220.220", "114.114.114.114", "223.5.5.5", "223.6.6.6"})
UNSPECIFIED_V4 = ipaddress.ip_network("0.0.0.0/8")
# Reserved for examples in documentation (RFC 5737, RFC 3849): they name no host at all.
DOCUMENTATION_NETS = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("198.51.100.0/24"),
                      ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32"))


def is_documentation(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    return any(ip in net or (mapped is not None and mapped in net) for net in DOCUMENTATION_NETS)


def ip_is_personal(address: str, prefix: str | None = None) -> bool:
    """False for the addresses that name no one's host (module docstring); True otherwise.
    `prefix`: the /N written after the address, if any."""
    ip = ipaddress.ip_address(address)
    if ip.is_loopback or ip.is_unspecified or address in PUBLIC_RESOLVERS or is_documentation(ip):
        return False
    if ip.version == 4 and ip in UNSPECIFIED_V4:
        return False
    bits, width = int(ip), ip.max_prefixlen
    if bits >> (width - 8) == 0xFF and (bits | (bits - 1)) == (1 << width) - 1:
        return False                                  # contiguous ones: a netmask (or 255.255.255.255)
    if prefix is not None and int(prefix) < width:
        try:
            ipaddress.ip_network(f"{address}/{prefix}", strict=True)   # host bits all zero: a network
            return False
        except ValueError:
            pass
    return True


# ---- phone numbers -----------------------------------------------------------------------------

PHONE_RES = [
    # international: +CC and groups (a "(0)" trunk prefix allowed), 8-15 digits in all
    re.compile(r"(?<![0-9A-Za-z+])\+[1-9]\d{0,2}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}(?![0-9A-Za-z]|[.-]\d)"),
    # Chinese mobile: 11 digits, or grouped 3-4-4
    re.compile(r"(?<![0-9A-Za-z.+-])1[3-9]\d(?:\d{8}|([ -])\d{4}\1\d{4})(?![0-9A-Za-z]|[.-]\d)"),
    # Chinese landline: area code 0XX(X), a local number of 7-8 digits not starting with 0 or 1, extension
    re.compile(r"(?<![0-9A-Za-z.+-])(?:\(0\d{2,3}\)\s?|0\d{2,3}-)[2-9]\d{6,7}(?:-\d{1,4})?(?![0-9A-Za-z]|[.-]\d)"),
    # NANP: (NXX) NXX-XXXX or NXX-NXX-XXXX / NXX.NXX.XXXX, optionally after 1-
    re.compile(r"(?<![0-9A-Za-z.+-])(?:1([ .-]))?(?:\([2-9]\d\d\)\s?[2-9]\d\d[ .-]|[2-9]\d\d([.-])[2-9]\d\d\2)\d{4}"
               r"(?![0-9A-Za-z]|[.-]\d)"),
    # other national numbers with a leading 0: area code and subscriber number (030 12345678), or
    # three to five groups joined by one kind of separator (020 7946 0958, 01 23 45 67 89)
    re.compile(r"(?<![0-9A-Za-z.,/+-])0(?:\d{2,4}[ -]\d{6,8}|\d{1,4}([ .-])\d{2,4}(?:\1\d{2,4}){1,3})"
               r"(?![0-9A-Za-z]|[.,/-]\d)"),
]
PHONE_DIGITS = (8, 15)       # international and NANP/Chinese numbers
NATIONAL_DIGITS = (9, 12)    # the generic leading-0 pattern, which needs more evidence


def _phone_digits_ok(match: re.Match, generic: bool) -> bool:
    digits = re.sub(r"\(0\)|\D", "", match.group(0))
    lo, hi = NATIONAL_DIGITS if generic else PHONE_DIGITS
    return lo <= len(digits) <= hi


# ---- masking -----------------------------------------------------------------------------------


def _sub(pattern: re.Pattern, text: str, placeholder: str, keep: Callable[[re.Match, str], bool],
         counts: Counter, kind: str) -> str:
    """Replace each match that `keep` does not veto; count replacements under `kind`."""
    def replace(m: re.Match) -> str:
        if keep(m, text):
            return m.group(0)
        counts[kind] += 1
        return placeholder

    return pattern.sub(replace, text)


def _keep_email(m: re.Match, text: str) -> bool:
    return m.group(1).lower() in FILE_SUFFIXES


def _keep_id(m: re.Match, text: str) -> bool:
    return not is_chinese_id(m.group(0))


def _keep_card(m: re.Match, text: str) -> bool:
    return not is_card(m.group(0))


def _keep_ipv6(m: re.Match, text: str) -> bool:
    candidate = m.group(0).split("%", 1)[0]
    if not any(c.isdigit() for c in candidate):
        return True
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return True
    prefix = PREFIX_AFTER_RE.match(text, m.end())
    return not ip_is_personal(candidate, prefix.group(1) if prefix else None)


def _keep_ipv4(m: re.Match, text: str) -> bool:
    if VERSION_BEFORE_RE.search(text[max(0, m.start() - 24):m.start()]):
        return True
    prefix = PREFIX_AFTER_RE.match(text, m.end())
    return not ip_is_personal(m.group(0), prefix.group(1) if prefix else None)


def mask_pii(text: str, types: Iterable[str] = PII_TYPES) -> tuple[str, Counter]:
    """`text` with each personal datum of `types` replaced by its placeholder, and the counts per type.

    The order matters: e-mail addresses first (their local part may be a phone number), then IDs
    and cards (long digit runs), IPv6 before IPv4 (::ffff:192.0.2.1 is one address), phones last."""
    types = set(types)
    counts: Counter = Counter()
    if "email" in types and "@" in text:
        text = _sub(EMAIL_RE, text, PLACEHOLDERS["email"], _keep_email, counts, "email")
    if "id" in types:
        text = _sub(CHINESE_ID_RE, text, PLACEHOLDERS["id"], _keep_id, counts, "id")
    if "card" in types:
        text = _sub(CARD_RE, text, PLACEHOLDERS["card"], _keep_card, counts, "card")
    if "ip" in types:
        if "::" in text or text.count(":") >= 7:
            text = _sub(IPV6_RE, text, PLACEHOLDERS["ip"], _keep_ipv6, counts, "ip")
        if "." in text:
            text = _sub(IPV4_RE, text, PLACEHOLDERS["ip"], _keep_ipv4, counts, "ip")
    if "phone" in types:
        for i, pattern in enumerate(PHONE_RES):
            generic = i == len(PHONE_RES) - 1
            text = _sub(pattern, text, PLACEHOLDERS["phone"],
                        lambda m, _t, g=generic: not _phone_digits_ok(m, g), counts, "phone")
    return text, counts


@dataclass
class MaskPII(Step):
    """Replace personal data with typed placeholders; the page is kept. `types`: which of
    email, phone, ip, card, id to mask (all by default)."""

    name: ClassVar[str] = "pii"
    types: list[str] = field(default_factory=lambda: list(PII_TYPES))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.types) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"types = {self.types!r}: unknown PII type {unknown[0]!r}; choose from "
                             f"{', '.join(PII_TYPES)}")

    def run(self, docs: Iterable[Document], rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for doc in docs:
            doc.text, counts = mask_pii(doc.text, self.types)
            if counts:
                self.stats.extra["pii_docs"] += 1
                for kind, n in counts.items():
                    self.stats.extra[f"pii_{kind}"] += n
            yield doc
