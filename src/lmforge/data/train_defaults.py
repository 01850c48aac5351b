"""Train the default classifiers shipped in `lmforge/data/assets/` from data this project did not write.

Paper: WanJuan-CC, arXiv 2402.19282, stages 4-5; docs/papers.md §4.

    pip install alt-profanity-check==1.9.1       # the English toxicity teacher (build time only)
    python -m lmforge.data.train_defaults         # rewrites assets/{toxic,porn,not_ad,fluency}.npz and their cards

Each default is a hashed-n-gram logistic regression (`lmforge.data.classifier`), so the pipeline
needs only numpy at run time. What each one learns from (the training split of
`lmforge.data.real_text` throughout; none of it comes from `lmforge.data.synthetic`, which plants
the demo crawl):

    toxic    English: distilled from alt-profanity-check, a scikit-learn model (TF-IDF + linear
             SVM over single words) trained by its authors on real comments. Its weights x idf,
             moved onto the student's word buckets and scaled by a fitted factor, start the
             student and pull it (L2 towards them); the student then learns the teacher's
             probabilities on real text and real text with words replaced by words of the
             teacher's vocabulary (the augmentation of Tang et al. 2019, arXiv 1903.12136).
             Without the start, the student memorised its transfer set and found 13% of the
             hand-written insults of its card. Chinese: real text with words of glin-profanity's
             Chinese list inserted, the abusive part of that list (`ZH_ABUSE`), against the same
             text clean or with pieces of those words.
    porn     real text with adult terms inserted: glin-profanity's English list (the LDNOOBW list,
             made to filter adult content) less its insults, slurs and clinical words
             (`EN_NOT_ADULT`), and the sexual part of its Chinese list (`ZH_SEXUAL`); against the
             same text clean or with abusive words inserted (so that insults alone are not porn);
             the terms also start the weights, as the teacher's do for toxic.
    not_ad   `assets/ads_train.jsonl` (120 advertising lines written by hand for this purpose, from
             the patterns of product pages, promotions and spam) alone or inserted into real text,
             against real text, Chinese product reviews included (commercial words, no advertising).
    fluency  real text against the same text corrupted (`real_text.corrupt`: shuffled, swapped,
             keyword-stuffed, resampled), so a page of real words in no real order scores low.

Deterministic for a given seed; writes each model's card (`lmforge.data.classifier_cards`) and
prints its figures. About two minutes on two cores.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lmforge.data import real_text
from lmforge.data.classifier import ASSETS, features, gram_hashes, save_linear, train_linear
from lmforge.data.safety import glin_words

TEACHER_REQUIREMENT = "alt-profanity-check==1.9.1"
# glin-profanity's Chinese list (294 words of insults and sexual terms mixed), split by hand. Words
# that are common in clean text are in neither part: 处女(作), 成人, 激情, (姑)娘的, 妈(妈)的, 你妈(妈),
# 靠背, 祖宗, 老母, and the clinical ones (乳房, 阴道, 阴茎, 精子, 射精, 包皮, 月经) and 强奸 (crime news).
ZH_ABUSE = """十三点 13点 下三烂 下贱 个老子的 仆街 他奶奶的 他奶娘的 他妈ㄉ王八蛋 他妈地 他妈的 他马的 你个傻比 你他马的
你奶奶的 你她马的 你妈的 你娘卡好 你娘咧 你它妈的 你它马的 你马的 傻比 傻逼 册那 刚瘪三 吃屎 塞你公 塞你娘 塞你母
塞你爸 塞你老师 塞你老母 奶奶的熊 她妈地 她妈的 她马的 妈B 妈个B 妈个比 妈个老比 妈比 妈的B 妈逼 妳她妈的 妳妈的
妳娘的 妳老母的 妳马的 娘个比 婊子 婊子养的 它妈地 它妈的 小瘪三 干x娘 干你妈 干你娘 干你老母 干妳妈 干妳娘 干妳老母
干妳马 干您娘 干机掰 干死你 懆您妈 懆您娘 我操你祖宗十八代 操你 操你全家 操你奶奶 操你妈 操你娘 操你祖宗 操你老妈
操你老母 操妳 操妳全家 操妳妈 操妳娘 操妳祖宗 操机掰 操比 操逼 日他娘 日你妈 日你老娘 日你老母 日批 杂种 灨你娘 烂货
烂逼 狗日 狗狼养的 王八蛋 瓜娃子 瓜婆娘 瓜批 瘪三 白痴 白癡 笨蛋 老瘪三 贱B 贱人 贱货 贼你妈 赛你老母 赛妳阿母 赣您娘
逼样 靠北 靠腰 驶你公 驶你娘 驶你母 驶你爸 驶你老师 驶你老母 龟儿子 骚比 骚货 骚逼 小骚比 小骚货 老骚比 老骚货 插死你
强奸你 奸你 狗屁 机机歪歪""".split()
ZH_SEXUAL = """三级片 乳交 乳头 乳波臀浪 你是鸡 你是鸭 做爱 军妓 几八 几叭 几巴 几芭 卖B 卖比 卖淫 双峰微颤 口交 叫床 后庭
吹箫 大鸡巴 奶子 妓女 妓院 姘头 射你 密洞 嫖娼 嫖客 小乳头 小肉粒 小鸡巴 小鸡鸡 屁眼 巨乳 性交 性器 性爱 情色 想上你
扒光 打炮 打飞机 抽插 招妓 插你 浪叫 淫乱 淫妇 淫棍 淫水 淫秽 淫荡 湿透的内裤 玉杵 肉壁 肉棍子 肉棒 肉缝 肛交 色情 荡妇
贝肉 轮奸 野鸡 阳具 阴唇 阴户 阴核 阴毛 雞巴 鸡8 鸡八 鸡叭 鸡吧 鸡奸 鸡巴 鸡芭 鸡鸡 龟头""".split()
# glin-profanity's English list is LDNOOBW, made to keep adult content out of search suggestions; these
# entries of it are insults, slurs, general swearing, crimes or clinical words, not adult content.
EN_NOT_ADULT = set("""a$$ @ss 4ss apeshit arsehole ass asshat asshole asswipe b!tch bastard bastardized bastardo
bastinado beaner beaners bitch bitches bollocks bs bullshit butt clusterfuck coon coons darkie dipshit dumbass
f*ck f@ck f4ck fvck phuck fuk faggot fecal fuck fucker fuckface fuckin fucking fucktards fuq goodpoop honkey
jackass jigaboo jiggaboo jiggerboo kike lmfao mf motherfucker negro neonazi nigga nigger omfg paki pissed
pissing poof raghead retard retarded santorum sh!t shit shite sh1t $hit $h!t shitblimp shithead shitshow shitty
simp slanteye spic stfu suck sucks swastika testbad01 tosser towelhead wetback wtf xx 🖕 rectum eunuch
genitals penis vagina vulva anus nipple nipples intercourse sex rape raping rapist daterape pedophile paedophile
nambla incest escort lolita playboy grope humping twat""".split()) | {
    "god damn", "how to kill", "how to murder", "nig nog", "piece of shit", "white power", "date rape",
    "poop chute"}


def glin_subset(words: Sequence[str], language: str) -> list[str]:
    """`words` that glin-profanity's list for `language` holds (the split above names only its words)."""
    listed = set(glin_words(language))
    return sorted({w.lower() for w in words} & listed)


def adult_terms_en() -> list[str]:
    return sorted(set(glin_words("en")) - EN_NOT_ADULT)


# ---- the English toxicity teacher ------------------------------------------------------------


def profanity_check():
    """alt-profanity-check's module (TF-IDF + calibrated linear SVM, trained on real comments)."""
    try:
        from profanity_check import profanity_check as pc
    except ImportError:
        raise ImportError("building the toxicity default needs its teacher: "
                          f"pip install {TEACHER_REQUIREMENT} (it pins its scikit-learn version)") from None
    return pc


def teacher_scores(texts: Sequence[str]) -> np.ndarray:
    return np.asarray(profanity_check().predict_prob(list(texts)), np.float64)


def teacher_vocabulary() -> tuple[list[str], np.ndarray]:
    """The teacher's words and their mean SVM weight over its calibration folds (high: toxic)."""
    pc = profanity_check()
    weights = np.mean([c.estimator.coef_[0] for c in pc.model.calibrated_classifiers_], axis=0)
    words = [""] * len(weights)
    for w, i in pc.vectorizer.vocabulary_.items():
        words[i] = w
    return words, np.asarray(weights)


# ---- building documents -------------------------------------------------------------------------


def replace_words(line: str, draw: Callable[[], str], rate: float, rng: random.Random) -> str:
    """Each word of an English line replaced, with probability `rate`, by `draw()`."""
    return " ".join(draw() if rng.random() < rate else w for w in line.split())


def insert_terms(line: str, terms: Sequence[str], k: int, rng: random.Random) -> str:
    """`k` terms put at random word (Chinese: character) boundaries of a line."""
    parts = real_text.units(line)
    chinese = len(parts) > 0 and all(len(p) == 1 for p in parts)
    for _ in range(k):
        parts.insert(rng.randint(0, len(parts)), rng.choice(terms))
    return real_text.join_units(parts, chinese)


def edit_lines(doc: str, edit: Callable[[str], str], rng: random.Random, max_lines: int = 3) -> str:
    """`edit` applied to 1..max_lines random lines of a document."""
    rows = doc.split("\n")
    for i in rng.sample(range(len(rows)), rng.randint(1, min(max_lines, len(rows)))):
        rows[i] = edit(rows[i])
    return "\n".join(rows)


def insert_fragments(line: str, terms: Sequence[str], k: int, rng: random.Random) -> str:
    """`k` proper pieces of terms (奶奶 of 他奶奶的, 鸡 of 鸡巴) put at random places: text with the
    characters of the terms but not the terms, so that a Chinese model learns the words, not
    characters that clean text is full of (鸡胸肉, 老是, 奶奶)."""
    parts = real_text.units(line)
    chinese = len(parts) > 0 and all(len(p) == 1 for p in parts)
    for _ in range(k):
        term = rng.choice([t for t in terms if len(t) > 1])
        i = rng.randrange(len(term) - 1)
        parts.insert(rng.randint(0, len(parts)), term[i:rng.randint(i + 1, len(term) - 1)])
    return real_text.join_units(parts, chinese)


# ---- priors: what a teacher or a word list knows, as weights of the student's features ----------


def term_weights(terms: Sequence[str], buckets: int) -> np.ndarray:
    """1 on the highest-order gram of each term: its unigram for one word, its bigrams for a phrase
    or a Chinese word (whose single characters are too common to carry it)."""
    w = np.zeros(buckets)
    for term in terms:
        unigrams, bigrams = gram_hashes(term)
        grams = bigrams if bigrams.size else unigrams
        w[(grams % np.uint64(buckets)).astype(np.int64)] = 1.0
    return w


def teacher_weights(buckets: int) -> np.ndarray:
    """The teacher's linear model moved into the student's features: weight x idf on each word's
    unigram bucket (the teacher is a linear SVM over TF-IDF of single words)."""
    words, weights = teacher_vocabulary()
    idf = profanity_check().vectorizer.idf_
    w = np.zeros(buckets)
    for word, c, f in zip(words, weights, idf):
        unigrams, bigrams = gram_hashes(word)
        if unigrams.size == 1:
            w[int(unigrams[0] % np.uint64(buckets))] += c * f
    return w


def fit_prior(rows: Sequence[tuple[str, float]], parts: Sequence[np.ndarray], steps: int = 3000,
              lr: float = 0.5) -> tuple[np.ndarray, float]:
    """The prior sum_k a_k parts[k] + b, with a and b fitted by logistic regression on the rows
    (a few parameters: a scale per source of knowledge and a bias)."""
    x = np.zeros((len(rows), len(parts)))
    for r, (text, _) in enumerate(rows):
        idx, val = features(text, parts[0].size)
        x[r] = [part[idx] @ val for part in parts]
    y = np.array([label for _, label in rows])
    a, b = np.ones(len(parts)), 0.0
    for _ in range(steps):
        err = 1.0 / (1.0 + np.exp(-(x @ a + b))) - y
        a -= lr * (x.T @ err) / len(y)
        b -= lr * err.mean()
    return sum(ak * part for ak, part in zip(a, parts)), b


def real_docs(lang: str, n: int, rng: random.Random) -> list[str]:
    """n training-split texts of one language, split evenly over its sources: half passages of
    1-8 lines, half single sentences (comments and ads are short)."""
    sources = [s for s, lg in real_text.SOURCES.items() if lg == lang]
    out = []
    for s in sources:
        m = n // len(sources)
        out += real_text.passages(s, "train", m - m // 2, rng) + real_text.sentences(s, "train", m // 2, rng)
    rng.shuffle(out)
    return out


def toxic_set(rng: random.Random, n: int = 8000) -> list[tuple[str, float]]:
    """English documents labelled by the teacher, Chinese ones by ZH_ABUSE; see the module docstring."""
    words, weights = teacher_vocabulary()
    toxic_words = [words[i] for i in np.argsort(-weights)[:1500]]

    def draw() -> str:   # half from the teacher's 1,500 most toxic words, half from all its 15,442 words
        return rng.choice(toxic_words) if rng.random() < 0.5 else rng.choice(words)

    en = real_docs("en", n, rng)
    en = [edit_lines(d, lambda line: replace_words(line, draw, rng.uniform(0.1, 0.4), rng), rng)
          if i % 2 else d for i, d in enumerate(en)]
    rows = list(zip(en, teacher_scores(en).tolist()))
    abuse = glin_subset(ZH_ABUSE, "zh")
    for i, d in enumerate(real_docs("zh", n * 3 // 4, rng)):
        if i % 3 == 0:
            rows.append((edit_lines(d, lambda line: insert_terms(line, abuse, rng.randint(1, 2), rng), rng), 1.0))
        else:
            rows.append((edit_lines(d, lambda line: insert_fragments(line, abuse, 1, rng), rng) if i % 3 == 1 else d,
                         0.0))
    return rows


def toxic_prior(rows: Sequence[tuple[str, float]], buckets: int) -> tuple[np.ndarray, float]:
    return fit_prior(rows, [teacher_weights(buckets), term_weights(glin_subset(ZH_ABUSE, "zh"), buckets)])


def porn_set(rng: random.Random, n: int = 3000) -> list[tuple[str, float]]:
    adult = {"en": adult_terms_en(), "zh": glin_subset(ZH_SEXUAL, "zh")}
    words, weights = teacher_vocabulary()
    insults = {"en": [words[i] for i in np.argsort(-weights)[:300] if words[i] not in set(glin_words("en"))],
               "zh": glin_subset(ZH_ABUSE, "zh")}
    rows: list[tuple[str, float]] = []
    for lang in ("en", "zh"):
        def with_terms(doc: str, terms: list[str]) -> str:
            return edit_lines(doc, lambda line: insert_terms(line, terms, rng.randint(1, 3), rng), rng)

        for i, d in enumerate(real_docs(lang, n, rng)):
            if i % 4 == 0:
                rows.append((with_terms(d, adult[lang]), 1.0))
            elif i % 4 == 1:
                rows.append((with_terms(d, insults[lang]), 0.0))
            elif i % 4 == 2 and lang == "zh":
                rows.append((edit_lines(d, lambda line: insert_fragments(line, adult[lang], 1, rng), rng), 0.0))
            else:
                rows.append((d, 0.0))
    return rows


def porn_prior(rows: Sequence[tuple[str, float]], buckets: int) -> tuple[np.ndarray, float]:
    return fit_prior(rows, [term_weights(adult_terms_en(), buckets), term_weights(glin_subset(ZH_SEXUAL, "zh"), buckets)])


def ads_train() -> dict[str, list[str]]:
    """The hand-written advertising lines of `assets/ads_train.jsonl`, by language."""
    out: dict[str, list[str]] = {"en": [], "zh": []}
    for line in (ASSETS / "ads_train.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        out[row["lang"]].append(row["text"])
    return out


def not_ad_set(rng: random.Random, n: int = 3000) -> list[tuple[str, float]]:
    ads = ads_train()
    rows: list[tuple[str, float]] = []
    for lang in ("en", "zh"):
        for i, d in enumerate(real_docs(lang, n, rng)):
            if i % 4 == 0:       # an advertisement on its own
                rows.append(("\n".join(rng.sample(ads[lang], rng.randint(1, 4))), 0.0))
            elif i % 4 == 1:     # a page of real text with advertising blocks in it
                lines = d.split("\n")
                for ad in rng.sample(ads[lang], rng.randint(2, 6)):
                    lines.insert(rng.randint(0, len(lines)), ad)
                rows.append(("\n".join(lines), 0.0))
            else:
                rows.append((d, 1.0))
    return rows


def fluency_set(rng: random.Random, n: int = 4000) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    for lang in ("en", "zh"):
        for i, d in enumerate(real_docs(lang, n, rng)):
            kind = real_text.CORRUPTIONS[i % len(real_text.CORRUPTIONS)]
            rows.append((real_text.corrupt(d, kind, rng), 0.0) if i % 2 else (d, 1.0))
    return rows


BUILDERS = {"toxic": toxic_set, "porn": porn_set, "not_ad": not_ad_set, "fluency": fluency_set}
PRIORS = {"toxic": toxic_prior, "porn": porn_prior}
BUCKETS = 1 << 17
L2 = 1e-4   # towards the prior where there is one (toxic, porn), else towards zero


def main(out_dir: Path = ASSETS, seed: int = 0, names: Sequence[str] = tuple(BUILDERS)) -> dict:
    """Train the defaults named, write `<name>.npz` and its card `<name>.md`; returns the card figures."""
    from lmforge.data import classifier_cards

    results = {}
    for name in names:
        rows = BUILDERS[name](random.Random(seed))
        prior = PRIORS[name](rows, BUCKETS) if name in PRIORS else None
        w, b = train_linear(rows, buckets=BUCKETS, l2=L2 if prior else 1e-6, prior=prior)
        path = Path(out_dir) / f"{name}.npz"
        save_linear(path, w, b)
        results[name] = classifier_cards.write_card(name, path)
        print(classifier_cards.summary(name, results[name]))
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(BUILDERS), help=f"which defaults ({', '.join(BUILDERS)})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(seed=args.seed, names=args.names)
