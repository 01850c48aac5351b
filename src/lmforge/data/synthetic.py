"""Synthetic unsafe and low-quality text for the demo crawl and the default classifiers.

Paper: WanJuan-CC, arXiv 2402.19282; docs/papers.md §4.

No package ships labelled toxic, pornographic, advertising or gibberish web text, so the project
writes it: sentences built from small word lists in English and Chinese, mixed into real text
(Shakespeare, People's Daily). The demo crawl and the training set of the shipped classifiers draw
from disjoint halves of each word list (`half=0` trains, `half=1` plants), so a classifier that
finds the planted pages has generalised from one set of words to another rather than memorised
them. It is still a demo: real deployments train on real labelled data
(`lmforge data train-classifier`).
"""

from __future__ import annotations

import random

TOXIC = {
    "en": ["idiot", "moron", "stupid", "loser", "bastard", "asshole", "jerk", "dumbass", "pathetic", "worthless",
           "scum", "trash", "freak", "imbecile", "disgusting", "retard", "cretin", "dimwit", "scumbag", "jackass"],
    "zh": ["傻逼", "蠢货", "白痴", "滚蛋", "去死", "废物", "垃圾", "混蛋", "王八蛋", "贱人", "脑残", "他妈的",
           "狗东西", "畜生", "贱货", "人渣", "杂种", "傻瓜", "笨蛋", "神经病"],
}
TOXIC_TEMPLATES = {
    "en": ["You are a {w} and everyone knows it.", "Shut up, you {w}.", "Only a {w} would write this, you {w}.",
           "Get lost, {w}, nobody wants you here.", "What a {w}, I hope you suffer.", "I hate you, {w}."],
    "zh": ["你这个{w}，大家都知道。", "闭嘴吧，{w}！", "只有{w}才会写这种东西，{w}。", "滚开，{w}，没人欢迎你。",
           "真是个{w}，{w}去死吧。", "我恨你，{w}！"],
}
PORN = {
    "en": ["porn", "xxx", "nude", "naked girls", "sex videos", "horny", "webcam girls", "adult videos", "explicit",
           "erotic", "milf", "hardcore", "nsfw", "strip show", "camgirls", "sexy teens", "hot singles", "orgasm",
           "fetish", "escort"],
    "zh": ["色情", "成人视频", "裸体", "性爱", "黄色网站", "激情视频", "一夜情", "约炮", "美女裸聊", "三级片",
           "成人电影", "性感美女", "裸照", "情色", "援交", "AV女优", "无码", "床戏", "偷拍", "黄片"],
}
PORN_TEMPLATES = {
    "en": ["Watch free {w} and {w} now.", "The best {w} site: {w} every day.", "Click for {w}, {w} and more.",
           "Hot {w} waiting for you tonight.", "Unlimited {w} streaming, {w} HD."],
    "zh": ["免费观看{w}和{w}。", "最好的{w}网站，每天更新{w}。", "点击进入{w}，{w}应有尽有。", "今晚{w}等你来。",
           "高清{w}在线看，{w}。"],
}
ADS = {
    "en": ["buy now", "limited time offer", "50% off", "free shipping", "click here", "best price", "discount code",
           "order today", "special deal", "save big", "lowest prices", "call now", "money back guarantee",
           "act fast", "exclusive offer", "hot sale", "clearance", "coupon", "bonus gift", "subscribe today"],
    "zh": ["限时优惠", "点击购买", "免费送货", "全场五折", "咨询热线", "加微信", "秒杀", "包邮", "优惠券", "立即抢购",
           "特价促销", "最低价", "买一送一", "火爆热卖", "厂家直销", "折扣", "抽奖", "新品上市", "会员专享", "扫码关注"],
}
AD_TEMPLATES = {
    "en": ["{w}! {w} on all items.", "Don't miss it: {w}, {w}.", "{w} - call 1-800-555-{n} today.",
           "Only ${n}.99, {w}!", "{w}, {w}, visit shop{n}.com."],
    "zh": ["{w}！全场{w}。", "机会难得：{w}，{w}。", "{w}，热线400-800-{n}。", "仅需{n}元，{w}！", "{w}，{w}，请访问shop{n}.com。"],
}


def _words(table: dict[str, list[str]], lang: str, half: int) -> list[str]:
    words = table[lang]
    return words[half::2]


def sentences(kind: str, lang: str, n: int, rng: random.Random, half: int = 1) -> list[str]:
    """n sentences of `kind` in {"toxic", "porn", "ad"}, from half `half` of its word list."""
    table, templates = {"toxic": (TOXIC, TOXIC_TEMPLATES), "porn": (PORN, PORN_TEMPLATES),
                        "ad": (ADS, AD_TEMPLATES)}[kind]
    words = _words(table, lang, half)
    out = []
    for _ in range(n):
        template = rng.choice(templates[lang])
        while "{w}" in template:
            template = template.replace("{w}", rng.choice(words), 1)
        out.append(template.replace("{n}", str(rng.randint(100, 9999))))
    return out


def mix(real: list[str], planted: list[str], rng: random.Random) -> list[str]:
    """Interleave planted sentences into real ones (both kept in order)."""
    out = list(real)
    for s in planted:
        out.insert(rng.randint(0, len(out)), s)
    return out


def word_salad(text: str, rng: random.Random) -> str:
    """Real words in random order (passes word-level rules; only a fluency model catches it)."""
    if any("\u4e00" <= c <= "\u9fff" for c in text[:200]):
        chars = [c for c in text if not c.isspace()]
        rng.shuffle(chars)
        return "\n".join("".join(chars[i:i + 80]) + "。" for i in range(0, len(chars), 80))
    words = text.split()
    rng.shuffle(words)
    return "\n".join(" ".join(words[i:i + 40]) + "." for i in range(0, len(words), 40))


def keyboard_mash(n_words: int, rng: random.Random) -> str:
    letters = "qwertyuiopasdfghjklzxcvbnm"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 12))) for _ in range(n_words)]
    return "\n".join(" ".join(words[i:i + 12]) for i in range(0, len(words), 12))
