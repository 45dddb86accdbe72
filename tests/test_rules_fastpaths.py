"""The engine's fast paths give the reference evaluator's answers.

The gate first asks whether a document holds any anchor word (substring tests for a few
anchors, one RE2 search of the unfolded text for many), and words of ASCII text are split
without a regex: each path is cross-checked here against `prefilter="none"`, on text
chosen to break them (ligatures, fullwidth letters, the Kelvin sign, underscores, curly
quotes). Also: the engine version is part of every rule hash.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalysts.errors import RuleSyntaxError
from catalysts.rules import RuleSet, canonical, engine, normalize, parse, parse_rule, rule_hash

ALIASES = {"vcs": ["Sequoia", "a16z", "Andreessen Horowitz"], "oai": ["OpenAI", "Sam Altman"]}
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Enough distinct words that the anchors go to the RE2 search, not substring tests.
FILLER_RULES = [
    (f"filler-{i}", "signal", f"{a} AND ({b} OR {c}*)")
    for i, (a, b, c) in enumerate(
        [
            ("alpha", "beta", "gamm"),
            ("delta", "epsilon", "zet"),
            ("theta", "iota", "kapp"),
            ("lambda", "mu", "nu"),
            ("omicron", "pi", "rh"),
            ("sigma", "tau", "upsil"),
            ("phi", "chi", "ps"),
            ("omega", "ampersand", "tild"),
            ("harbor", "vessel", "cargo"),
            ("quarry", "granite", "marbl"),
            ("falcon", "hawk", "eagl"),
            ("meadow", "clover", "dais"),
            ("glacier", "fjord", "tundr"),
        ]
    )
]
RULES = [
    *FILLER_RULES,
    ("ipo", "signal", '@oai AND (IPO OR "files for IPO" OR "go public")'),
    ("vc", "confirm", "@vcs NEAR/3 (crypto OR AI)"),
    ("file", "signal", "file* AND title:report"),
    ("kelvin", "signal", "kilo NEAR/2 watt"),
    ("snake", "signal", "open AND ai"),
    ("cafe", "signal", "café OR 東京"),
    ("quiet", "signal", "NOT /spam/i"),  # an always-rule whose regex matters
    ("re", "confirm", r"/\bS-1\b/ AND sec"),
    ("short", "signal", 'S-1 OR "no ai"'),  # phrases of short words: anchored whole
]
WORDS = [
    "OpenAI",
    "Sam",
    "Altman",
    "IPO",
    "files",
    "for",
    "go",
    "public",
    "Sequoia",
    "a16z",
    "Andreessen",
    "Horowitz",
    "crypto",
    "AI",
    "\ufb01le",  # the ligature: folds to "file"
    "\ufb01les",
    "ＩＰＯ",  # fullwidth: folds to "ipo"
    "report",
    "\u212ailo",  # Kelvin sign: folds to "kilo"
    "kilo",
    "watt",
    "open_ai",
    "open",
    "ai",
    "cafe\u0301",
    "café",
    "東京都",
    "東京",
    "SPAM",
    "S-1",
    "SEC",
    "alpha",
    "beta",
    "gammas",
    "ZETA",
    "harbor",
    "cargoes",
    "the",
    "said",
    "no",
    "1",
    "s",
]
SEPS = [" ", ", ", " - ", "'", "“", "” ", ". ", "\n", "—", "_", "\u00a0"]


def texts(extra: list[str] | None = None) -> st.SearchStrategy[str]:
    sep = st.sampled_from(SEPS)
    return st.lists(st.tuples(st.sampled_from(WORDS + (extra or [])), sep), max_size=14).map(
        lambda parts: "".join(w + s for w, s in parts)
    )


DOCS = st.fixed_dictionaries({"title": texts(), "summary": texts()})
MANY = RuleSet.compile(RULES, ALIASES)  # type: ignore[arg-type]
MANY_REFERENCE = RuleSet.compile(RULES, ALIASES, prefilter="none")  # type: ignore[arg-type]
# Few anchor words, none short ("ai", "s"): the substring test.
FEW_RULES = [r for r in RULES if not r[0].startswith("filler") and r[0] not in ("vc", "short")]
FEW = RuleSet.compile(FEW_RULES, ALIASES)  # type: ignore[arg-type]
FEW_REFERENCE = RuleSet.compile(FEW_RULES, ALIASES, prefilter="none")  # type: ignore[arg-type]


# Every word looked for is ASCII: the words of a document beyond ASCII are then looked up
# among its ASCII runs ("caf" of "café"), and not tokenised.
ASCII_RULES = [r for r in RULES if r[0] != "cafe"]
ASCII_MANY = RuleSet.compile(ASCII_RULES, ALIASES)  # type: ignore[arg-type]
ASCII_REFERENCE = RuleSet.compile(ASCII_RULES, ALIASES, prefilter="none")  # type: ignore[arg-type]
NON_ASCII_WORDS = ["éopenai", "ipoé", "Ａi", "naïve", "s-1é", "ｓ-1", "kiloé", "\u212awatt"]


def test_the_rule_sets_take_the_paths_under_test() -> None:
    # If the thresholds move, these tests must still reach both anchor tests.
    assert MANY._anchor_search is not None and MANY._anchor_first is not None
    assert FEW._anchor_words is not None and FEW._anchor_search is None
    assert ASCII_MANY._all_tokens().ascii and not MANY._all_tokens().ascii


@SETTINGS
@given(DOCS)
def test_many_rules_agree_with_the_reference(doc: dict[str, str]) -> None:
    assert MANY.match(doc) == MANY_REFERENCE.match(doc)


@SETTINGS
@given(DOCS)
def test_few_rules_agree_with_the_reference(doc: dict[str, str]) -> None:
    assert FEW.match(doc) == FEW_REFERENCE.match(doc)


@SETTINGS
@given(st.lists(DOCS | st.just({}) | st.just({"url": "https://x.example/a"}), max_size=8))
def test_a_batch_agrees_with_the_reference(docs: list[dict[str, str]]) -> None:
    # One anchor search over the joined batch must flag every document one by one would.
    assert MANY.match_many(docs) == [MANY_REFERENCE.match(d) for d in docs]
    assert FEW.match_many(docs) == [FEW_REFERENCE.match(d) for d in docs]


@SETTINGS
@given(
    st.lists(
        st.fixed_dictionaries({"title": texts(NON_ASCII_WORDS), "summary": texts()}), max_size=6
    )
)
def test_ascii_rules_agree_with_the_reference_on_words_beyond_ascii(
    docs: list[dict[str, str]],
) -> None:
    expected = [ASCII_REFERENCE.match(d) for d in docs]
    assert ASCII_MANY.match_many(docs) == expected
    assert [ASCII_MANY.match(d) for d in docs] == expected


def test_rules_are_evaluated_only_if_a_conjunction_of_their_clauses_may_hold() -> None:
    ruleset = RuleSet.compile(
        [
            ("a", "signal", "(alpha OR beta) AND (gamma OR (delta AND epsilon))"),
            ("b", "signal", "(zeta NEAR/2 eta) OR NOT theta"),
        ],
        {},
    )
    (a, b) = (engine._conjuncts(r.node, ruleset._keys) for r in ruleset.rules)
    ab, gamma, delta, epsilon = (
        frozenset(("w", tuple(w.split()), False) for w in words)
        for words in (["alpha", "beta"], ["gamma"], ["delta"], ["epsilon"])
    )
    assert a == [(ab, delta, epsilon), (ab, gamma)]
    assert b == [()]  # can hold with no word at all
    key = {w: ("w", (w,), False) for w in ["alpha", "gamma", "delta", "epsilon", "zeta"]}
    assert ruleset._possible({key["alpha"], key["delta"]}) == {1}
    assert ruleset._possible({key["alpha"], key["delta"], key["epsilon"]}) == {0, 1}
    assert [m.item for m in ruleset.match({"title": "alpha delta"})] == ["b"]
    assert [m.item for m in ruleset.match({"title": "alpha epsilon delta"})] == ["a", "b"]


def test_an_and_of_many_ors_is_weakened_not_dropped() -> None:
    # 3**5 conjunctions would exceed _MAX_CONJUNCTS: some ORs are collapsed to one clause
    # of their anchors, a looser condition that still holds wherever the rule does.
    groups = [[f"w{i}a", f"(w{i}b AND w{i}c)", f"(w{i}d AND w{i}e)"] for i in range(5)]
    rule = " AND ".join("(" + " OR ".join(g) + ")" for g in groups)
    fast = RuleSet.compile([("big", "signal", rule)], {})
    reference = RuleSet.compile([("big", "signal", rule)], {}, prefilter="none")
    (forms,) = (engine._conjuncts(r.node, fast._keys) for r in fast.rules)
    assert 1 < len(forms) <= engine._MAX_CONJUNCTS
    for words, holds in [
        ("w0a w1b w1c w2a w3d w3e w4a", True),
        ("w0a w1b w2a w3d w3e w4a", False),  # w1c missing
        ("w0b w0c w1a w2e w2d w3a w4c w4b", True),
        ("w0a w1a w2a w3a w4a", True),
    ]:
        doc = {"title": words}
        assert fast.match(doc) == reference.match(doc)
        assert bool(fast.match(doc)) is holds


def test_a_batch_flags_each_document_with_an_anchor() -> None:
    # Two anchors in one document, then one in each of the next two: the search skips to
    # the next document after a hit, and must not skip past a document.
    docs = [
        {"title": "alpha beta and alpha beta"},
        {"title": "OpenAI plans an IPO", "summary": "nothing"},
        {"title": "none"},
        {"title": "harbor cargo"},
        {"title": "ends with alph"},  # joined with the next, "alph\na" must not be a word
        {"title": "a quiet day"},
        {"title": "lone \ud800 surrogate alpha beta"},
    ]
    expected = [MANY_REFERENCE.match(d) for d in docs]
    assert [[m.item for m in ms] for ms in expected][:4] == [
        ["filler-0", "quiet"],
        ["ipo", "quiet"],
        ["quiet"],
        ["filler-8", "quiet"],
    ]
    assert MANY.match_many(docs) == expected
    assert MANY.match_many(docs[:-1]) == expected[:-1]


@pytest.mark.parametrize("engine", [MANY, FEW], ids=["re2-anchors", "substring-anchors"])
@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("\ufb01les show a report", ["file"]),  # the anchor is found only after folding
        ("The ＩＰＯ of OpenAI", ["ipo"]),
        ("\u212ailo and watt", ["kelvin"]),
        ("open_ai", ["snake"]),  # `_` separates words
        ("Le cafe\u0301 ouvre", ["cafe"]),
        ("nothing here", ["quiet"]),
        ("SPAM nothing else", []),  # the always-rule's regex is seen with no anchor word
    ],
)
def test_folded_anchors_are_found(engine: RuleSet, title: str, expected: list[str]) -> None:
    found = [m.item for m in engine.match({"title": title})]
    assert [i for i in found if i != "quiet"] == [i for i in expected if i != "quiet"]
    assert ("quiet" in found) is ("spam" not in title.lower())


def test_dense_near_keeps_each_hit_once() -> None:
    ruleset = RuleSet.compile([("n", "signal", "ai NEAR/2 crypto")], {})
    title = "ai crypto ai crypto ai crypto"
    (match,) = ruleset.match({"title": title})
    assert [title[h.start : h.end] for h in match.hits] == ["ai", "crypto"] * 3
    reference = RuleSet.compile([("n", "signal", "ai NEAR/2 crypto")], {}, prefilter="none")
    assert reference.match({"title": title}) == [match]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcXYZ019 _-'.,\n\t“”—\u00a0é\ufb01東"), max_size=60))
def test_words_of_matches_tokenize(text: str) -> None:
    assert normalize.words_of(normalize.fold(text)) == list(normalize.tokenize(text).words)


def test_lexer_positions_skip_leading_whitespace() -> None:
    for source, position in [("  a AND", 4), ("a   nope:b", 4), ("x \t/ab/q", 7)]:
        with pytest.raises(RuleSyntaxError) as info:
            parse_rule(source)
        assert info.value.position == position, source
    assert canonical(parse_rule("  title:IPO   OR  a ")) == canonical(parse_rule("title:IPO OR a"))


def test_rule_hash_includes_the_engine_version(monkeypatch: pytest.MonkeyPatch) -> None:
    source = "@oai AND IPO"
    expected = hashlib.sha256(
        f"catalysts-rules-{parse.ENGINE_VERSION}\n{canonical(parse_rule(source, ALIASES))}".encode()
    ).hexdigest()
    before = rule_hash(source, ALIASES)
    assert before == expected
    monkeypatch.setattr(parse, "ENGINE_VERSION", parse.ENGINE_VERSION + 1)
    after = rule_hash(source, ALIASES)
    assert after != before
    assert rule_hash(source, ALIASES) == after  # still deterministic


def test_the_shipped_rules_on_every_real_entry_agree_with_the_reference(real_dir) -> None:
    # Real news heads many phrases with common words ("to", "ai", "on"): the candidate
    # pruning and the alias/NEAR short cuts must still answer as evaluating every rule.
    # The reference is slow (every term of every rule located): every fifth entry.
    from pathlib import Path

    from catalysts.feedparse import ParseError, parse_feed
    from catalysts.rules import document
    from catalysts.watchlist import load_watchlist

    wl = load_watchlist(Path(__file__).resolve().parents[1] / "watchlist.yaml")
    sources = [(i.id, "signal", i.signal) for i in wl.items]
    sources += [(i.id, "confirm", i.confirm) for i in wl.items if i.confirm]
    fast = RuleSet.compile(sources, wl.aliases)  # type: ignore[arg-type]
    reference = RuleSet.compile(sources, wl.aliases, prefilter="none")  # type: ignore[arg-type]
    checked = matched = 0
    for path in sorted(p for p in real_dir.rglob("*") if p.is_file() and p.suffix != ".md"):
        try:
            feed = parse_feed(path.read_bytes(), url=path.as_uri())
        except ParseError:
            continue
        docs = [document(e, path.stem, feed.title) for e in feed.entries[::5]]
        expected = [reference.match(d) for d in docs]
        assert fast.match_many(docs) == expected, path.name
        assert [fast.match(d) for d in docs] == expected, path.name
        checked += len(docs)
        matched += sum(1 for m in expected if m)
    assert checked > 600 and matched >= 5  # the corpus, and rules that do match in it


def test_fold_chunks_attach_exactly_what_unicodedata_attaches() -> None:
    # `_chunks` keeps a character's marks (and Hangul jamo tails) with it, from the
    # generated mark table: it must hold every code point unicodedata calls a mark (all
    # of non-zero combining class are), and nothing else.
    import sys
    import unicodedata

    from catalysts.rules._marks import MARKS, MARKS_BMP

    def code_points(body: str) -> set[int]:
        found, i = set(), 0
        while i < len(body):
            if i + 2 < len(body) and body[i + 1] == "-":
                found.update(range(ord(body[i]), ord(body[i + 2]) + 1))
                i += 3
            else:
                found.add(ord(body[i]))
                i += 1
        return found

    marks = {
        cp
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp))[0] == "M" or unicodedata.combining(chr(cp))
    }
    assert code_points(MARKS) == marks
    assert code_points(MARKS_BMP) == {cp for cp in marks if cp <= 0xFFFF}
    for text in ["e\u0301\U0001d165x", "\u1100\u1161\u11a8k", "a\U000e0100b", "ｶﾞ"]:
        chunks = normalize._chunks(text)
        assert "".join(c for _, _, c in chunks) == text
        assert [c for _, _, c in chunks] == {
            "e\u0301\U0001d165x": ["e\u0301\U0001d165", "x"],
            "\u1100\u1161\u11a8k": ["\u1100\u1161\u11a8", "k"],
            "a\U000e0100b": ["a\U000e0100", "b"],
            "ｶﾞ": ["ｶ", "ﾞ"],  # a halfwidth voiced mark is no mark: its own chunk
        }[text]
    assert normalize.fold("ｶﾞ") == "カ\u3099"


def test_fold_normalises_in_one_call_only_where_chunks_cannot_interact() -> None:
    # `fold` is NFKC per chunk (`_chunks`); text without a `_JOINS_PREVIOUS` character is
    # normalised whole, which is the same only if no chunk after the first can compose
    # with, or reorder into, the one before: its NFKD must start with a character of
    # combining class 0 that is no second half of a canonical composition.
    import re
    import sys
    import unicodedata

    from catalysts.rules._marks import MARKS

    seconds = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # Hangul V and T
    for cp in range(sys.maxunicode + 1):
        parts = unicodedata.decomposition(chr(cp)).split()
        if (
            len(parts) == 2
            and parts[0][0] != "<"
            and unicodedata.normalize("NFC", chr(cp)) == chr(cp)
        ):
            seconds.add(int(parts[1], 16))
    attached = re.compile(f"[{MARKS}{normalize._JAMO_TAIL}]")  # never starts a chunk
    assert all(attached.match(chr(cp)) for cp in seconds)
    joining = []
    for cp in range(sys.maxunicode + 1):
        char = chr(cp)
        if unicodedata.is_normalized("NFKD", char) or attached.match(char):
            continue  # (a character that is its own NFKD and starts a chunk is no mark)
        first = unicodedata.normalize("NFKD", char)[0]
        if unicodedata.combining(first) or ord(first) in seconds:
            joining.append(char)
    assert joining and all(normalize._JOINS_PREVIOUS.match(c) for c in joining)
    for text in ["Wait… what", "x²₀ 𝕏 ﬁle", "ｶﾞ…", "\u1100\u3162…", "e\u0301… Å", "…\u0301"]:
        chunked = "".join(normalize._fold_chunk(c) for _, _, c in normalize._chunks(text))
        assert normalize._fold_general(text) == chunked
    assert normalize._fold_general("\u1100\u3162…") != unicodedata.normalize(
        "NFKC", "\u1100\u3162…"
    )


class _WrapperOnly:
    """An RE2 pattern seen through its public methods only, as in a `re2` release that
    does not expose the extension object the engine's fast calls use."""

    def __init__(self, pattern: object) -> None:
        self._pattern = pattern

    def search(self, data: bytes, pos: int = 0) -> object:
        return self._pattern.search(data, pos)  # type: ignore[attr-defined]

    def findall(self, data: bytes) -> list[object]:
        return self._pattern.findall(data)  # type: ignore[attr-defined]


@pytest.mark.parametrize("data", [b"", b"x ab", b"ab x cd ab", b"abcd cd", b"nothing here"])
def test_raw_re2_calls_agree_with_the_wrapper(data: bytes) -> None:
    import re2

    fast = re2.compile(rb"\b(ab|cd)\b")
    slow = _WrapperOnly(fast)
    assert engine._raw_match(fast) is not None  # the fast calls are under test
    assert engine._raw_match(slow) is None
    assert engine._raw_search(fast)(data) == engine._raw_search(slow)(data)
    assert engine._raw_findall(fast)(data) == engine._raw_findall(slow)(data)
    for pos in range(len(data) + 1):
        assert engine._raw_first(fast)(data, pos) == engine._raw_first(slow)(data, pos)
