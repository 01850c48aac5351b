"""URL filtering: drop a page by its URL before any of its text is parsed (domain lists, banned words).

Paper: FineWeb (Penedo et al., arXiv 2406.17557) filters URLs first of all, with a domain blocklist
and banned words in the URL (datatrove's URLFilter), the method of RefinedWeb (arXiv 2306.01116);
WanJuan-CC (arXiv 2402.19282, stage 4) blocks ~13M domains; docs/papers.md §4. The lists here are
the project's own, small and written for this step.

A page is dropped, with the first reason that applies:

    url_domain:<entry>   its host or any parent domain is listed: a listed example.com blocks
                         a.b.example.com, not notexample.com or example.com.au. Lists: the shipped
                         sample (assets/domain_blocklist.txt), files of one domain a line (`files`),
                         the UT1 blacklist's layout (`ut1` = a folder of `<category>/domains` files,
                         read for `categories`), and the recipe's own `domains`.
    url_word:<word>      a hard word: one hit drops. Matched on the URL's tokens (lower-cased,
                         percent-decoded, split on non-alphanumerics; a token ending in "s" also
                         matches without it) and inside the labels of the host (freepornclips.example),
                         where a hit that lies inside an innocent word (`innocent_words`: sussex,
                         scunthorpe, xxxl) does not count: the Scunthorpe problem.
    url_soft_words:<a>+<b>  `min_soft_words` distinct soft words among the tokens (hot + teen +
                         cams): each alone is innocent; tokens only, never substrings.

Where it differs from datatrove's URLFilter: datatrove matches its "subwords" in the whole URL with
separators removed (paths included) and has no innocent words; it checks the registered domain and
the full host, not the domains in between; its tokens are not lower-cased. tests/data/test_url_filter.py
counts this rule's false positives on a fixture of innocent URLs (docs/data.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from lmforge.data.classifier import ASSETS
from lmforge.data.document import Document
from lmforge.data.safety import read_list
from lmforge.data.step import Filter

# Adult words that are rarely innocent in a URL. "sex" is the costly one: it is also in sex education
# and sex-offender registers (see the false positives in docs/data.md); move it to soft_words to trade
# those for recall.
HARD_WORDS = ("porn", "porno", "xxx", "sex", "hentai", "milf", "nsfw", "fuck", "blowjob", "cumshot", "gangbang",
              "bukkake", "cunt", "camgirl")
# Innocent alone ("hot sauce", "adult education", "Ford Escort"), telling together.
SOFT_WORDS = ("teen", "girl", "babe", "hot", "sexy", "nude", "naked", "cam", "webcam", "amateur", "adult", "escort",
              "mature", "anal", "cock", "tits", "busty", "horny", "strip", "stripper", "erotic", "fetish", "kinky",
              "dildo", "dating")
# Words that hold a hard word without its meaning; a hard word found inside one of them in a host
# label is no hit. "sexual" keeps sexual-health and bisexual sites (their pages still meet the word
# blocklist and the porn classifier in the safe stage).
INNOCENT_WORDS = ("sussex", "essex", "middlesex", "wessex", "unisex", "sextant", "sextet", "sexton", "sexual",
                  "milford", "milfoil", "scunthorpe", "xxxl")
TOKEN_RE = re.compile(r"[a-z0-9]+")


def host_of(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.lower().rstrip(".")


def url_tokens(url: str) -> list[str]:
    """The URL lower-cased and percent-decoded, split on everything that is not a-z or 0-9."""
    return TOKEN_RE.findall(unquote(url).lower())


def ut1_domains(folder: str | Path, categories: list[str]) -> list[str]:
    """The domains of `categories` in a UT1 blacklist folder (`<folder>/<category>/domains`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ut1 = {str(folder)!r}: not a folder (the UT1 blacklist's `blacklists/`, "
                                f"holding <category>/domains files)")
    entries: list[str] = []
    for category in categories:
        path = folder / category / "domains"
        if not path.is_file():
            known = sorted(p.parent.name for p in folder.glob("*/domains"))
            raise FileNotFoundError(f"ut1 = {str(folder)!r}: no {category}/domains; categories there: "
                                    f"{', '.join(known) or 'none'}")
        entries += read_list(path)
    return entries


def _occurrences(word: str, text: str) -> list[int]:
    starts, i = [], text.find(word)
    while i >= 0:
        starts.append(i)
        i = text.find(word, i + 1)
    return starts


@dataclass
class UrlFilter(Filter):
    """Drop pages by domain lists and banned words in their URL (module docstring); pages without
    a URL pass."""

    name: ClassVar[str] = "url_filter"
    domains: list[str] = field(default_factory=list)      # entries written in the recipe itself
    files: list[str] = field(default_factory=list)        # blocklist files, one domain a line
    ut1: str = ""                                         # a UT1 blacklist folder: <category>/domains
    categories: list[str] = field(default_factory=lambda: ["adult", "gambling"])   # read from `ut1`
    use_default: bool = True                              # the shipped assets/domain_blocklist.txt
    hard_words: list[str] = field(default_factory=lambda: list(HARD_WORDS))
    soft_words: list[str] = field(default_factory=lambda: list(SOFT_WORDS))
    min_soft_words: int = 2
    innocent_words: list[str] = field(default_factory=lambda: list(INNOCENT_WORDS))

    def setup(self) -> None:
        entries = read_list(ASSETS / "domain_blocklist.txt") if self.use_default else []
        for f in self.files:
            entries += read_list(f)
        if self.ut1:
            entries += ut1_domains(self.ut1, self.categories)
        entries += [d.strip().lower() for d in self.domains if d.strip()]
        self.blocked = frozenset(e.lstrip("*.") for e in entries)
        self.hard = frozenset(w.lower() for w in self.hard_words)
        self.hard_sorted = sorted(self.hard)   # the reported word does not depend on set order
        self.soft = frozenset(w.lower() for w in self.soft_words)
        self.innocent = [w.lower() for w in self.innocent_words]

    def blocked_domain(self, host: str) -> str | None:
        """The listed entry that blocks `host` (itself or a parent domain), or None."""
        parts = host.split(".")
        return next((d for d in (".".join(parts[i:]) for i in range(len(parts))) if d in self.blocked), None)

    def hard_word_in_label(self, label: str) -> str | None:
        """A hard word inside a host label, outside every innocent word that occurs there."""
        for word in self.hard_sorted:
            for start in _occurrences(word, label):
                end = start + len(word)
                if not any(s <= start and end <= s + len(w) for w in self.innocent for s in _occurrences(w, label)):
                    return word
        return None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not doc.url:
            return True
        host = host_of(doc.url)
        entry = self.blocked_domain(host) if host else None
        if entry:
            return False, f"url_domain:{entry}"
        tokens = set(url_tokens(doc.url))
        tokens |= {t[:-1] for t in tokens if t.endswith("s")}
        hard = sorted(tokens & self.hard)
        if hard:
            return False, f"url_word:{hard[0]}"
        for label in host.split("."):
            word = self.hard_word_in_label(label)
            if word:
                return False, f"url_word:{word}"
        soft = sorted(tokens & self.soft)
        if len(soft) >= self.min_soft_words:
            return False, f"url_soft_words:{'+'.join(soft)}"
        return True
