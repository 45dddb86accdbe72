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
from catalysts.rules import RuleSet, canonical, normalize, parse, parse_rule, rule_hash

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


def texts() -> st.SearchStrategy[str]:
    sep = st.sampled_from(SEPS)
    return st.lists(st.tuples(st.sampled_from(WORDS), sep), max_size=14).map(
        lambda parts: "".join(w + s for w, s in parts)
    )


DOCS = st.fixed_dictionaries({"title": texts(), "summary": texts()})
MANY = RuleSet.compile(RULES, ALIASES)  # type: ignore[arg-type]
MANY_REFERENCE = RuleSet.compile(RULES, ALIASES, prefilter="none")  # type: ignore[arg-type]
# Few anchor words, none short ("ai", "s"): the substring test.
FEW_RULES = [r for r in RULES if not r[0].startswith("filler") and r[0] not in ("vc", "short")]
FEW = RuleSet.compile(FEW_RULES, ALIASES)  # type: ignore[arg-type]
FEW_REFERENCE = RuleSet.compile(FEW_RULES, ALIASES, prefilter="none")  # type: ignore[arg-type]


def test_the_rule_sets_take_the_paths_under_test() -> None:
    # If the thresholds move, these tests must still reach both anchor tests.
    assert MANY._anchor_search is not None and MANY._anchor_first is not None
    assert FEW._anchor_words is not None and FEW._anchor_search is None


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

    from catalysts.rules import engine

    fast = re2.compile(rb"\b(ab|cd)\b")
    slow = _WrapperOnly(fast)
    assert engine._raw_match(fast) is not None  # the fast calls are under test
    assert engine._raw_match(slow) is None
    assert engine._raw_search(fast)(data) == engine._raw_search(slow)(data)
    assert engine._raw_findall(fast)(data) == engine._raw_findall(slow)(data)
    for pos in range(len(data) + 1):
        assert engine._raw_first(fast)(data, pos) == engine._raw_first(slow)(data, pos)
