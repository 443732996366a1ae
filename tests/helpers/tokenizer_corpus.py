"""Deterministic text for the tokenizer tests: a training corpus for SentencePiece and a test corpus of varied
strings (prose, code, whitespace runs, digits, CJK, emoji with ZWJ, combining marks, RTL, special tokens in text,
empty strings, very long words)."""
import random

WORDS = ("the of and to in a is that for it as was with be by on not he I this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no out up said what its about into "
         "than them can only other new some could time these two may then do first any my now such like our over man "
         "me even most made after also did many before must through back years where much your way well down should "
         "because each just those people how too little state good very make world still own see men work long get "
         "here between both life being under never day same another know while last might us great old year off come "
         "since against go came right used take three tokenizer merges vocabulary sentence piece running jumped "
         "quickly beautiful international understanding").split()
CODE = [
    "def forward(self, x):\n    return self.linear(x) + 1\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "<div class=\"row\"><span>{{ value }}</span></div>",
    "const f = (a, b) => a ?? b; // nullish\n",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
    "    x = y  # comment with    spaces\n\n\n",
    "fn main() { println!(\"{}\", 42_u64); }",
]
CJK = "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴切刻紧夜苦急衣示"
JAPANESE = "こんにちは世界、今日はいい天気ですね。カタカナとひらがな。"
KOREAN = "안녕하세요 세계, 한국어 문장입니다."
EMOJI = ["😀", "👍", "🎉", "🚀", "❤️", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏽‍💻", "🇫🇷", "🧑‍🤝‍🧑", "✨", "🤖"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "Z\u0335\u0336\u0337", "\u0915\u094d\u0937"]
RTL = ["مرحبا بالعالم", "שלום עולם", "السلام عليكم ورحمة الله", "עברית וערבית", "\u202eRTL override\u202c"]
OTHER = ["Ünïcödé", "naïve café résumé", "Straße", "Ελληνικά γράμματα", "Русский текст здесь", "ไทย ภาษา",
         "Tiếng Việt có dấu", "हिन्दी भाषा", "ℌ𝔢𝔩𝔩𝔬 𝕎𝕠𝕣𝕝𝕕", "½ ¼ ™ © ® ° ± × ÷", "\u00a0nbsp\u2009thin\u3000wide"]
WHITESPACE = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \t ", "    ", "\u3000", "\u00a0", "\x0b", "\x0c"]


def _words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _sentence(rng):
    s = _words(rng, rng.randint(3, 18))
    return s[0].upper() + s[1:] + rng.choice([".", "!", "?", ",", ";", ":", " ..."])


def _cjk(rng):
    return "".join(rng.choice(CJK) for _ in range(rng.randint(1, 30)))


def _digits(rng):
    kind = rng.randrange(5)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randint(1, 20)))
    if kind == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 6)}f}"
    if kind == 2:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if kind == 3:
        return "+1 (555) 0{}-{}".format(rng.randrange(10, 99), rng.randrange(1000, 9999))
    return "0x%X" % rng.randrange(1 << 32)


def training_lines(seed=0, n=6000):
    """Lines to train SentencePiece on."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        kind = i % 10
        if kind < 5:
            lines.append(" ".join(_sentence(rng) for _ in range(rng.randint(1, 4))))
        elif kind == 5:
            lines.append(rng.choice(CODE).replace("\n", " "))
        elif kind == 6:
            lines.append(_cjk(rng) + " " + JAPANESE[: rng.randint(3, len(JAPANESE))])
        elif kind == 7:
            lines.append(" ".join([rng.choice(OTHER), rng.choice(RTL), KOREAN]))
        elif kind == 8:
            lines.append(" ".join(_digits(rng) for _ in range(rng.randint(1, 6))))
        else:
            lines.append(_sentence(rng) + " " + "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3))))
    return lines


def make_test_corpus(seed=1, n=10000, specials=("<s>", "</s>", "<unk>", "<extra_id_0>", "<extra_id_1>", "zzword", "<tool>", "<pad>")):
    """At least n varied strings, the empty string and edge cases first."""
    rng = random.Random(seed)
    fixed = ["", " ", "  ", "\n", "\t", " \n ", "a", " a", "a ", "  a  ", "▁", "▁▁a", " ▁ ", "<", ">", "<0x41>",
             "\u2581hello", "hello\u2581", "x" * 5000, "ab" * 3000, " " * 300, "\n" * 100, "é" * 500, "😀" * 200,
             "👨‍👩‍👧‍👦" * 20, "".join(EMOJI), "".join(COMBINING), " ".join(RTL), "\x00", "\x00a\x00", "\ufffd",
             "\U0010ffff", "\ue000 private use", "\u200b zero width \u200d joiner", "\ufeffBOM"]
    fixed += [s for s in specials] + [f"a{s}b" for s in specials] + [f" {s} " for s in specials]
    fixed += ["".join(specials), " ".join(specials), "<s><s></s>", "<s", "s>", "<extra_id_", "<extra_id_0"]
    out = list(fixed)
    makers = [
        lambda: _sentence(rng),
        lambda: " ".join(_sentence(rng) for _ in range(rng.randint(2, 6))),
        lambda: rng.choice(CODE),
        lambda: rng.choice(CODE).replace("    ", "\t"),
        lambda: rng.choice(WHITESPACE) + _words(rng, rng.randint(1, 5)) + rng.choice(WHITESPACE),
        lambda: rng.choice(WHITESPACE).join(_words(rng, 1) for _ in range(rng.randint(2, 8))),
        lambda: "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(1, 12))),
        lambda: _digits(rng) + " " + _digits(rng),
        lambda: _cjk(rng),
        lambda: JAPANESE[rng.randrange(len(JAPANESE)):] + KOREAN[: rng.randrange(len(KOREAN))],
        lambda: _sentence(rng) + rng.choice(EMOJI) + rng.choice(EMOJI),
        lambda: " ".join(rng.choice(COMBINING) + _words(rng, 1) for _ in range(3)),
        lambda: rng.choice(RTL) + " " + _words(rng, 2) + " " + rng.choice(RTL),
        lambda: rng.choice(OTHER),
        lambda: _words(rng, 3) + rng.choice(specials) + _words(rng, 2),
        lambda: rng.choice(specials) + " " + _sentence(rng) + " " + rng.choice(specials),
        lambda: rng.choice(specials) + rng.choice(specials) + rng.choice(WHITESPACE) + rng.choice(specials),
        lambda: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(20, 400))),
        lambda: "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randint(1, 40))),
        lambda: "".join(chr(rng.choice([rng.randrange(0x20, 0xD800), rng.randrange(0xE000, 0x110000)]))
                        for _ in range(rng.randint(1, 20))),
        lambda: bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 60))).decode("ascii"),
        lambda: "".join(rng.choice([" ", "a", "▁", "\n", "é", "<s>", "😀"]) for _ in range(rng.randint(1, 30))),
    ]
    while len(out) < n:
        out.append(makers[len(out) % len(makers)]())
    return out
