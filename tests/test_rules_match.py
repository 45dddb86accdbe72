"""Matching real text: whole words in any script, phrases, prefixes, fields, NEAR, regex,
aliases, and evidence whose offsets point into the original strings."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from catalysts.errors import RuleSyntaxError
from catalysts.models import Entry, RuleMatch
from catalysts.rules import RuleSet, document, fold
from catalysts.rules.normalize import term_words

ALIASES = {
    "openai": ["OpenAI", "Sam Altman"],
    "top_vcs": ["Sequoia", "Lightspeed", "Accel", "a16z", "Andreessen Horowitz"],
}
PREFILTERS = ("gate", "tokens", "re2-set", "none")


def matches(rule: str, doc: dict[str, str], prefilter: str = "gate") -> list[RuleMatch]:
    ruleset = RuleSet.compile([("item", "signal", rule)], ALIASES, prefilter=prefilter)  # type: ignore[arg-type]
    return ruleset.match(doc)


def hits(rule: str, title: str) -> list[tuple[str, str]]:
    """(term, matched slice of the title) for a rule, [] when it does not match."""
    found = matches(rule, {"title": title})
    return [(h.term, title[h.start : h.end]) for m in found for h in m.hits]


REAL_TEXT = [
    # whole words: a name is not the start of a longer word
    ("Accel", "Accel leads $40M round in crypto AI startup", True),
    ("Accel", "Accelerating adoption of stablecoins", False),
    ("Accel", "Nvidia's accelerator sales", False),
    ("NEAR", "Fog disrupts flights near Tokyo", True),  # the word itself, any case
    ("NEAR", "Residents of nearby towns evacuated", False),
    ('"NEAR Protocol"', "Fog disrupts flights near Tokyo protocol", False),
    ('"NEAR Protocol"', "NEAR Protocol unveils AI agent hub", True),
    # possessives and hyphenated compounds contain the word
    ("OpenAI", "OpenAI's board weighs listing", True),
    ("OpenAI", "OpenAI’s board weighs listing", True),
    ("AI", "AI-powered trading bots", True),
    ("AI", "The minister said again that rain is likely", False),
    ("IPO", "pre-IPO schemes targeted by SEC", True),  # the rule must say more than IPO
    ("@openai AND IPO", "pre-IPO schemes targeted by SEC", False),
    # a term with punctuation is a phrase of its tokens
    ("S-1", "Circle files S-1 with the SEC", True),
    ("S-1", "Circle files S 1 with the SEC", True),
    ("S-1", "The S1 engine", False),
    # phrases: consecutive words, punctuation between ignored
    ('"files for IPO"', "Chip maker files for IPO", True),
    ('"files for IPO"', "Chip maker files, for: IPO!", True),
    ('"files for IPO"', "Chip maker files for an IPO", False),
    ('"files for IPO"', "IPO for files", False),
    # prefixes
    ("tokeni*", "Tokenization of real-world assets", True),
    ("tokeni*", "BlackRock tokenizes a fund", True),
    ("tokeni*", "Data is retokenized", False),
    # Unicode: NFKC, casefolding, decomposed accents
    ("OpenAI", "ＯｐｅｎＡＩ ＩＰＯ rumours", True),
    ("finance", "Decentralised ﬁnance grows", True),
    ("Straße", "STRASSE gesperrt", True),
    ("café", "Le cafe\u0301 est ouvert", True),
    ("Müller", "MÜLLER resigns", True),
    # scripts without spaces: each character is a word, a term is a phrase of characters
    ("東京", "東京証券取引所が上場を承認", True),
    ("人工知能", "政府は人工知能の規制を検討", True),
    ("証券", "東京証券取引所", True),
    ("東京", "京東", False),
    ("AI", "AI技術の進歩", True),
    ("ปัญญาประดิษฐ์", "ข่าวปัญญาประดิษฐ์วันนี้", True),
    ("cafe", "Le café est ouvert", False),  # accents are kept: folding is not stripping
    ("Σωκράτης", "ΣΩΚΡΆΤΗΣ σήμερα", True),  # final sigma folds like any sigma
    ("σωκράτης", "ΣΩΚΡΆΤΗΣ σήμερα", True),
    ("हिन्दी", "हिन्दी भाषा", True),
    ("हि", "हिन्दी भाषा", False),  # a Devanagari syllable inside a word is not a word
    # raw HTML is still matched on its text, entities and tags being just separators
    ("OpenAI AND IPO", "<p><b>OpenAI</b> readies &amp; IPO</p>", True),
]


@pytest.mark.parametrize(("rule", "title", "expected"), REAL_TEXT)
def test_real_text(rule: str, title: str, expected: bool) -> None:
    for prefilter in PREFILTERS:
        assert bool(matches(rule, {"title": title}, prefilter)) is expected, prefilter


def test_evidence_offsets_index_the_original_string() -> None:
    cases = [
        ("OpenAI AND IPO", "Report: ＯｐｅｎＡＩ plans ＩＰＯ"),
        ("ﬁnance OR Straße", "Die Straße der ﬁnance"),
        ('"files for IPO"', "Ärger: Startup files — for IPO"),
        ("café", "½ cafe\u0301 ½ café"),
        ("東京", "明日東京で"),
        ("tokeni*", "“Tokenisation” of ᴀssets"),
    ]
    for rule, text in cases:
        found = matches(rule, {"title": text})
        assert found, (rule, text)
        for hit in found[0].hits:
            piece = text[hit.start : hit.end]
            words = term_words(hit.term.strip('"').rstrip("*"))
            got = term_words(piece)
            if hit.term.endswith("*"):
                assert got[-1].startswith(words[-1]) and got[:-1] == words[:-1]
            else:
                assert got == words, (rule, text, piece)
            # modulo case: the folded slice contains the folded term
            assert fold(piece).replace("\u0301", "") != "" and len(piece) > 0


def test_phrase_hit_spans_from_first_to_last_word() -> None:
    assert hits('"files for IPO"', "Startup files, for IPO today") == [
        ('"files for IPO"', "files, for IPO")
    ]


def test_possessive_hit_covers_only_the_word() -> None:
    assert hits("OpenAI", "OpenAI's IPO") == [("OpenAI", "OpenAI")]


def test_not_terms_are_never_evidence() -> None:
    assert hits("IPO AND NOT spam", "IPO news") == [("IPO", "IPO")]
    assert hits("IPO AND NOT spam", "IPO spam") == []
    found = matches("NOT spam", {"title": "quiet day"})
    assert found == [RuleMatch("item", "signal", ())]
    assert hits("NOT (NOT IPO)", "IPO now") == []  # matched, but IPO sits under a NOT


def test_a_word_that_is_the_start_of_another_term_does_not_hide_it() -> None:
    rules = [("a", "signal", "caf"), ("b", "signal", "café"), ("c", "signal", "token*")]
    rules += [("d", "signal", "tokens"), ("e", "signal", '"ai agents"'), ("f", "signal", "ai")]
    for prefilter in PREFILTERS:
        ruleset = RuleSet.compile(rules, {}, prefilter=prefilter)  # type: ignore[arg-type]
        assert [m.item for m in ruleset.match({"title": "Le café"})] == ["b"], prefilter
        assert [m.item for m in ruleset.match({"title": "tokens"})] == ["c", "d"], prefilter
        found = ruleset.match({"title": "AI agents, ai_tools"})
        assert [m.item for m in found] == ["e", "f"], prefilter


def test_rules_that_can_match_empty_are_evaluated_for_every_document() -> None:
    ruleset = RuleSet.compile(
        [("a", "signal", "NOT spam"), ("b", "signal", "IPO"), ("c", "signal", "x OR NOT y")],
        ALIASES,
    )
    assert [m.item for m in ruleset.match({"title": "nothing relevant"})] == ["a", "c"]
    assert [m.item for m in ruleset.match({"title": "spam y"})] == []
    assert [m.item for m in ruleset.match({})] == ["a", "c"]


def test_or_collects_every_true_branch_and_false_branches_give_nothing() -> None:
    assert hits("IPO OR listing", "IPO and listing") == [("IPO", "IPO"), ("listing", "listing")]
    assert hits("(OpenAI AND IPO) OR listing", "OpenAI listing") == [("listing", "listing")]


def test_every_occurrence_is_evidence() -> None:
    assert hits("IPO", "IPO, IPO") == [("IPO", "IPO"), ("IPO", "IPO")]
    found = matches("IPO", {"title": "IPO, IPO"})
    assert [(h.start, h.end) for h in found[0].hits] == [(0, 3), (5, 8)]


def test_alias_elements_match_as_words_and_phrases() -> None:
    assert hits("@openai", "Sam Altman speaks") == [('"Sam Altman"', "Sam Altman")]
    assert hits("@top_vcs", "Andreessen Horowitz backs it") == [
        ('"Andreessen Horowitz"', "Andreessen Horowitz")
    ]
    assert hits("@top_vcs", "Accelerating") == []


# --- fields --------------------------------------------------------------------------------

DOC = {
    "title": "OpenAI files for IPO",
    "summary": "The ChatGPT maker picked Goldman Sachs.",
    "url": "https://www.coindesk.com/markets/2025/openai-ipo",
    "feed": "coindesk CoinDesk: Bitcoin, Ethereum, Crypto News",
    "author": "Jane Doe",
    "category": "Markets | Policy",
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("Goldman", True),  # unscoped terms search title and summary
        ("coindesk", False),  # ... but not url or feed
        ("url:coindesk", True),
        ("feed:coindesk", True),
        ("author:doe", True),
        ("category:policy", True),
        ('category:"markets policy"', True),
        ("title:Goldman", False),
        ("summary:Goldman", True),
        ("title:(IPO OR Goldman)", True),
        ("title:Goldman OR summary:OpenAI", False),
        ("url:openai NEAR/1 url:ipo", True),
    ],
)
def test_fields(rule: str, expected: bool) -> None:
    for prefilter in PREFILTERS:
        assert bool(matches(rule, DOC, prefilter)) is expected, prefilter


def test_hits_name_their_field() -> None:
    found = matches("IPO OR url:markets OR Goldman", DOC)
    assert [(h.field, DOC[h.field][h.start : h.end]) for h in found[0].hits] == [
        ("title", "IPO"),
        ("summary", "Goldman"),
        ("url", "markets"),
    ]


def test_missing_and_non_text_fields_are_empty() -> None:
    assert matches("IPO", {"title": None, "summary": 3}) == []  # type: ignore[dict-item]
    assert matches("IPO", {"summary": "IPO", "bogus": "IPO"})[0].hits[0].field == "summary"


# --- NEAR ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "title", "expected"),
    [
        ("OpenAI NEAR/3 IPO", "OpenAI plans an IPO", True),  # 2 words between
        ("OpenAI NEAR/2 IPO", "OpenAI plans an IPO", True),
        ("OpenAI NEAR/1 IPO", "OpenAI plans an IPO", False),
        ("IPO NEAR/3 OpenAI", "OpenAI plans an IPO", True),  # either order
        ("OpenAI NEAR/1 IPO", "OpenAI IPO", True),
        ("@top_vcs NEAR/5 (crypto OR blockchain)", "Andreessen Horowitz bets on crypto", True),
        ('"go public" NEAR/2 OpenAI', "OpenAI could go public soon", True),
        ("token* NEAR/1 launch", "Tokens launch today", True),
        ("AI NEAR/1 AI", "AI", False),  # one occurrence is not near itself
    ],
)
def test_near(rule: str, title: str, expected: bool) -> None:
    for prefilter in PREFILTERS:
        assert bool(matches(rule, {"title": title}, prefilter)) is expected, prefilter


def test_near_needs_both_in_one_field_and_reports_the_close_pair() -> None:
    assert matches("OpenAI NEAR/5 IPO", {"title": "OpenAI", "summary": "IPO"}) == []
    text = "IPO rumours. OpenAI denies. Much later, years on, another IPO"
    assert hits("OpenAI NEAR/2 IPO", text) == [("IPO", "IPO"), ("OpenAI", "OpenAI")]


# --- regex ---------------------------------------------------------------------------------


def test_regex_matches_the_original_text() -> None:
    assert hits(r"/S-1\b/", "Files S-1 today") == [(r"/S-1\b/", "S-1")]
    assert hits(r"/S-1\b/", "files s-1 today") == []  # case-sensitive without i
    assert hits(r"/S-1\b/i", "files s-1 today") == [(r"/S-1\b/i", "s-1")]
    assert hits(r"/\$\d+(\.\d+)?[MB]\b/ AND raise*", "Raises $40M seed") == [
        ("raise*", "Raises"),
        (r"/\$\d+(\.\d+)?[MB]\b/", "$40M"),
    ]
    assert hits("/ファンド/", "新しいファンド設立") == [("/ファンド/", "ファンド")]


def test_regex_scoped_to_a_field() -> None:
    assert bool(matches(r"url:/\/20\d\d\//", DOC)) is True
    assert bool(matches(r"title:/\/20\d\d\//", DOC)) is False


# --- the rule set --------------------------------------------------------------------------


def test_matches_come_in_compile_order_with_item_and_rule() -> None:
    ruleset = RuleSet.compile(
        [
            ("openai-ipo", "signal", '@openai AND (IPO OR "go public")'),
            ("openai-ipo", "confirm", '@openai AND ("files for IPO" OR "S-1")'),
            ("vc-entry", "signal", "@top_vcs NEAR/5 crypto"),
        ],
        ALIASES,
    )
    found = ruleset.match({"title": "OpenAI files for IPO", "summary": "Sequoia eyes crypto"})
    assert [(m.item, m.rule) for m in found] == [
        ("openai-ipo", "signal"),
        ("openai-ipo", "confirm"),
        ("vc-entry", "signal"),
    ]
    assert found[1].terms == ("OpenAI", '"files for IPO"')


def test_compile_error_names_item_and_rule() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        RuleSet.compile([("ok", "signal", "IPO"), ("bad", "confirm", "(IPO")], ALIASES)
    assert info.value.message.startswith("bad.confirm: unbalanced parenthesis")
    assert info.value.position == 0


def test_compile_rejects_unknown_alias() -> None:
    with pytest.raises(RuleSyntaxError, match="unknown alias @nope"):
        RuleSet.compile([("x", "signal", "@nope")], ALIASES)


def test_empty_rule_set_matches_nothing() -> None:
    assert RuleSet.compile([], {}).match({"title": "anything"}) == []


def test_lone_surrogates_do_not_crash() -> None:
    for prefilter in PREFILTERS:
        assert matches("IPO OR /x/", {"title": "IPO \ud800 x"}, prefilter)[0].terms == (
            "IPO",
            "/x/",
        )


# --- document() ----------------------------------------------------------------------------


def test_document_fields() -> None:
    entry = Entry(
        key="k",
        title="OpenAI files for IPO",
        summary="ChatGPT maker",
        link="https://example.com/a",
        author="Jane",
        categories=("Markets", "AI"),
        published=datetime(2025, 1, 1, tzinfo=timezone.utc),
    )
    assert document(entry, "coindesk", "CoinDesk News") == {
        "title": "OpenAI files for IPO",
        "summary": "ChatGPT maker",
        "url": "https://example.com/a",
        "feed": "coindesk CoinDesk News",
        "author": "Jane",
        "category": "Markets | AI",
    }
    bare = document(Entry(key="k", title="t"), "hn")
    assert bare == {
        "title": "t",
        "summary": "",
        "url": "",
        "feed": "hn",
        "author": "",
        "category": "",
    }


# --- real headlines from real feeds ------------------------------------------------------


def _real_titles(real_dir: Path, limit: int = 4000) -> list[dict[str, str]]:
    feedparser = pytest.importorskip("feedparser")
    docs: list[dict[str, str]] = []
    for path in sorted(real_dir.rglob("*")):
        if not path.is_file() or path.suffix not in (".xml", ".rss", ".atom", ""):
            continue
        parsed = feedparser.parse(path.read_bytes())
        for entry in parsed.entries:
            docs.append({"title": entry.get("title", ""), "summary": entry.get("summary", "")})
    if not docs:
        pytest.skip(f"no feed entries found under {real_dir}")
    return docs[:limit]


def test_all_candidate_strategies_agree_on_real_feeds(real_dir: Path) -> None:
    rules = [
        ("openai-ipo", "signal", '@openai AND (IPO OR "initial public offering" OR "go public")'),
        ("vc-entry", "signal", "@top_vcs NEAR/8 (crypto OR blockchain OR AI)"),
        ("policy", "signal", "(Trump OR Congress OR SEC) AND (crypto* OR stablecoin*)"),
        ("ai", "signal", '"artificial intelligence" OR AI OR LLM* OR agent*'),
        ("neg", "signal", "NOT (the OR a)"),
        ("re", "signal", r"/\b[A-Z]{2,5}\b/ AND market*"),
        ("cjk", "signal", "人工知能 OR 東京"),
    ]
    docs = _real_titles(real_dir)
    reference = RuleSet.compile(rules, ALIASES, prefilter="none")
    others = [RuleSet.compile(rules, ALIASES, prefilter=p) for p in ("gate", "tokens")]  # type: ignore[arg-type]
    matched = 0
    for doc in docs:
        expected = reference.match(doc)
        matched += bool(expected)
        for other in others:
            assert other.match(doc) == expected, (other.prefilter, doc["title"])
    assert matched > 0  # the rules do fire on real news, so the comparison means something


def test_evidence_on_real_headlines_slices_to_the_terms(real_dir: Path) -> None:
    ruleset = RuleSet.compile([("ai", "signal", 'AI OR "artificial intelligence" OR crypto*')], {})
    seen = 0
    for doc in _real_titles(real_dir):
        for found in ruleset.match(doc):
            for hit in found.hits:
                words = term_words(doc[hit.field][hit.start : hit.end])
                assert words[:1] in (("ai",), ("artificial",)) or words[0].startswith("crypto")
                seen += 1
    assert seen > 0
