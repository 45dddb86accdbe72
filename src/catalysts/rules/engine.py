"""Compile many rules into one matcher; match documents; return evidence.

Three steps, so the cost per document barely grows with the number of rules:

1. the anchor test, before any folding: does the document contain any ANCHOR word? A
   rule holds only if one of its conjunctions of clauses does (`_conjuncts`: an AND needs
   a term of each of its parts, an OR one of its operands), and each conjunction is
   watched for through one clause, its anchor (`_anchor`: the one least likely to
   occur); a document with no anchor word can satisfy no rule but the few that hold with
   no positive term (`NOT spam`). With a handful of anchor words (re-matching one edited
   item over the whole store) the test is a few substring tests; with many, one RE2
   search of the documents joined;
2. candidates: the lexical keys of the terms that may occur (a superset), from the
   document's tokens (`_TokenIndex`: each term's pivot -- a phrase's longest whole word
   -- looked up among them, and a phrase kept only if all its whole words are tokens
   too). Text whose word characters are all ASCII is not even folded (its fold is
   `lower()`); other text is, and if the rules look for ASCII words only, its ASCII runs
   stand for its tokens (else each field is tokenised, after one RE2 search of every
   pivot, `_shares_a_word`). Then only the rules with a conjunction whose every clause
   has a candidate go on (`RuleSet._possible`): most documents that pass the anchor test
   stop here;
3. exact evaluation: the fields are tokenised, candidate terms are located as whole-word
   token sequences, and the boolean logic runs, collecting the positive hits (offsets
   into the original text) as evidence.

Other candidate searches are kept selectable for the benchmark that compares them and
for tests that cross-check them: `prefilter="tokens"` (token sets only, no anchor test),
`"re2-set"` (one RE2 Set pattern per term: ~50x slower than the gate with thousands of
terms, as RE2's DFA must track which of them matched) and `"none"` (evaluate every rule
with a term present: the reference). Measured by `benchmarks/bench_match.py`.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import accumulate
from typing import Any, Literal

from catalysts.errors import RuleSyntaxError
from catalysts.models import DEFAULT_FIELDS, FIELDS, Entry, Hit, RuleMatch, RuleName
from catalysts.rules import normalize
from catalysts.rules.parse import (
    AliasRef,
    And,
    Near,
    Node,
    Not,
    Or,
    Term,
    can_match_empty,
    compile_regex,
    parse_rule,
    terms,
)

Prefilter = Literal["gate", "tokens", "re2-set", "none"]
_FIELD_ORDER = {name: i for i, name in enumerate(FIELDS)}
_NOT_WORD = "[^0-9a-z]"  # ASCII-only on purpose: a superset of the exact Unicode boundary
_SET_MAX_MEM = 256 << 20
_SURROGATE = re.compile("[\ud800-\udfff]")

# An occurrence: first and last token index, or -1 and the original span for a regex hit.
_Occ = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One item's rule, parsed with aliases expanded."""

    item: str
    rule: RuleName
    source: str
    node: Node
    always: bool  # can hold with no positive term: evaluated for every document


def _fields(term: Term) -> tuple[str, ...]:
    return term.fields if term.fields is not None else DEFAULT_FIELDS


def _lex_key(term: Term) -> tuple[Any, ...]:
    if term.regex is not None:
        return ("re", term.regex, term.flags)
    return ("w", term.words, term.prefix)


def _re2_options() -> Any:
    """RE2 options for the engine's own patterns: quiet, and room for thousands of terms."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.max_mem = _SET_MAX_MEM
    return options


def _set_pattern(words: tuple[str, ...], prefix: bool) -> str:
    import re2

    parts: list[str] = []
    if not normalize.is_spaceless(words[0]):
        parts.append(f"(?:^|{_NOT_WORD})")
    for i, word in enumerate(words):
        if i:
            tight = normalize.is_spaceless(words[i - 1]) or normalize.is_spaceless(word)
            parts.append(_NOT_WORD + ("*" if tight else "+"))
        parts.append(re2.escape(word))
    if not prefix and not normalize.is_spaceless(words[-1]):
        parts.append(f"(?:{_NOT_WORD}|$)")
    return "".join(parts)


class _FieldSet:
    """The RE2 Sets of one field: its word terms (folded text, for `prefilter="re2-set"`)
    and its regexes."""

    def __init__(
        self, word_keys: list[tuple[Any, ...]], regex_keys: list[tuple[Any, ...]], word_set: bool
    ) -> None:
        import re2

        self.word_keys = word_keys
        self.regex_keys = regex_keys
        options = _re2_options()
        self.words = self.regexes = None
        if word_keys and word_set:
            self.words = re2.Set.SearchSet(options)
            for key in word_keys:
                self.words.Add(_set_pattern(key[1], key[2]))
            self.words.Compile()
        if regex_keys:
            self.regexes = re2.Set.SearchSet(options)
            for key in regex_keys:
                self.regexes.Add(("(?i)" if "i" in key[2] else "") + key[1])
            self.regexes.Compile()


def _alternation(words: Iterable[str]) -> str:
    """Longest first, so at one position the longest word is the one reported."""
    # tokens hold only letters, digits and marks: never a regex metacharacter. A stable
    # sort by length (reversed, which keeps ties in order) of the sorted words.
    return "|".join(sorted(sorted(words), key=len, reverse=True))


def _re2_class(chars: str) -> str:
    """A Python `re` class body of literal characters and ranges, as RE2 `\\x{..}` escapes."""
    return "".join(c if c in "-^" else f"\\x{{{ord(c):x}}}" for c in chars)


# `normalize`'s non-ASCII word character, for RE2.
_WORDISH_NON_ASCII_RE2 = "[" + _re2_class(normalize.WORDISH_NON_ASCII_CLASS[1:-1]) + "]"

# Up to this many anchor words, substring tests (`in`, a C loop) beat one RE2 call --
# unless one is this short, when a substring is found in most text ("ai" in "said").
_SUBSTRING_ANCHORS = 12
_SHORT = 2


def _phrase_pattern(key: tuple[Any, ...]) -> str:
    """An RE2 pattern for an ASCII phrase in lowered text: its words in order, separated by
    anything but letters and digits (a superset of its token sequence)."""
    body = "[^0-9a-z]+".join(re.escape(w) for w in key[1])
    return f"\\b{body}" + ("" if key[2] else "\\b")


def _collect_terms(node: Node, positive: bool, every: list[Term], positives: list[Term]) -> None:
    """`parse.terms` and `parse.positive_terms` of `node` in one walk (appended)."""
    cls = node.__class__
    if cls is Term:
        every.append(node)  # type: ignore[arg-type]
        if positive:
            positives.append(node)  # type: ignore[arg-type]
    elif cls is And or cls is Or:
        for child in node.children:  # type: ignore[union-attr]
            _collect_terms(child, positive, every, positives)
    elif cls is Not:
        _collect_terms(node.child, False, every, positives)  # type: ignore[union-attr]
    elif cls is Near:
        _collect_terms(node.left, positive, every, positives)  # type: ignore[union-attr]
        _collect_terms(node.right, positive, every, positives)  # type: ignore[union-attr]


# A conjunction of clauses: it holds only if, for every clause, a term with one of the
# clause's lexical keys occurs. A rule is an OR of such conjunctions (`_conjuncts`).
_Clause = frozenset[tuple[Any, ...]]
_Conjunct = tuple[_Clause, ...]
# Beyond this many conjunctions an AND of ORs is weakened (`_collapse`): still a necessary
# condition, only a looser one, and the shipped rules stay well below it.
_MAX_CONJUNCTS = 64


def _conjuncts(node: Node, keys: Mapping[int, tuple[Any, ...]]) -> list[_Conjunct]:
    """The node as an OR of conjunctions of clauses (a disjunctive form over which terms
    occur): it can hold only if one of them does. `[()]` when it can hold with no
    positive term present (a NOT, an unexpanded alias). `keys` maps id(term) to its key.

    Per document, this says which rules can hold from the candidate keys alone: a clause
    per AND operand, so `@crypto AND @us_agencies AND (approve OR ...)` needs a word of
    each, and one conjunction per OR operand, so that a big OR of such ANDs is not held
    possible by a word of one and a word of another.
    """
    cls = node.__class__
    if cls is Term:
        return [(frozenset((keys[id(node)],)),)]
    if cls is Or:
        merged: set[tuple[Any, ...]] = set()  # one-clause conjunctions are one clause
        out: list[_Conjunct] = []
        for child in node.children:  # type: ignore[union-attr]
            if child.__class__ is Term:  # the common case, an alias: no list to build
                merged.add(keys[id(child)])
                continue
            for conjunct in _conjuncts(child, keys):
                if not conjunct:
                    return [()]
                if len(conjunct) == 1:
                    merged.update(conjunct[0])
                else:
                    out.append(conjunct)
        if merged:
            out.append((frozenset(merged),))
        return out if len(out) <= _MAX_CONJUNCTS else [_collapse(out)]
    if cls is And or cls is Near:
        operands = node.children if cls is And else (node.left, node.right)  # type: ignore[union-attr]
        product: list[_Conjunct] = [()]
        for child in operands:
            options = _conjuncts(child, keys)
            if not options[0]:  # [()]: no condition
                continue
            if len(product) * len(options) > _MAX_CONJUNCTS:
                options = [_collapse(options)]
            product = [a + b for a in product for b in options]
        return product
    return [()]  # Not, AliasRef: can hold with no positive term


def _collapse(conjuncts: list[_Conjunct]) -> _Conjunct:
    """One clause implied by any of the conjunctions: the union of their anchors."""
    return (frozenset().union(*(_anchor(c) for c in conjuncts)),)


def _anchor(clauses: Sequence[_Clause]) -> _Clause:
    """The clause to watch for: word terms only if possible, then the one least likely to
    occur (`_chance`), so that `Story NEAR/3 (Protocol OR mainnet)` is watched for through
    "protocol" or "mainnet", and not through "story"."""
    if len(clauses) == 1:
        return clauses[0]
    return min(clauses, key=_chance)  # the first of the best


@lru_cache(maxsize=1 << 12)  # the clause of an alias is in many conjunctions
def _chance(clause: _Clause) -> tuple[bool, int]:
    """Whether the clause holds a regex term, and how likely one of its words is to occur,
    each word's chance guessed from its length alone: 1 in 2**length, as a rule the
    longer a word the rarer (in units of 2**-64, so that sums are exact)."""
    regex, chance = False, 0
    for key in clause:
        if key[0] == "re":
            regex = True
        else:
            chance += 1 << max(0, 64 - len(_pivot(key)))
    return regex, chance


def _raw_match(pattern: Any) -> Any:
    """`(data, pos, end) -> spans` of an unanchored search by the extension object under
    the compiled RE2 `pattern` (spans[0] the match, (-1, -1) for none, then the groups),
    or None when this `re2` version does not expose it.

    The `_raw_*` helpers below call it when they can: the wrapper's generator and match
    object cost more than the DFA scan of a 1 KB document.
    """
    import re2

    regexp = getattr(pattern, "_regexp", None)
    unanchored = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if regexp is None or unanchored is None or not hasattr(regexp, "Match"):
        return None
    return partial(regexp.Match, unanchored)  # in C: no extra Python frame per call


def _raw_search(pattern: Any) -> Any:
    """`data -> bool`: does the RE2 `pattern` occur in the bytes `data`?"""
    match = _raw_match(pattern)
    if match is None:
        return lambda data: pattern.search(data) is not None
    none = (-1, -1)
    return lambda data: match(data, 0, len(data))[0] != none


def _raw_first(pattern: Any) -> Any:
    """`(data, pos) -> int`: where the first match of the RE2 `pattern` in the bytes `data`
    at or after `pos` starts, or -1 (as `_raw_search`, without match objects)."""
    match = _raw_match(pattern)
    if match is None:

        def first_wrapped(data: bytes, pos: int) -> int:
            found = pattern.search(data, pos)
            return found.start() if found is not None else -1

        return first_wrapped
    return lambda data, pos: match(data, pos, len(data))[0][0]


def _raw_findall(pattern: Any) -> Any:
    """`data -> list[bytes]`: the non-empty groups (or, with none, the text) of every match
    of `pattern` in `data`, as `pattern.findall` gives them, without match objects."""
    match = _raw_match(pattern)
    if match is None:

        def findall_wrapped(data: bytes) -> list[bytes]:
            found = pattern.findall(data)
            return [w for g in found for w in (g if isinstance(g, tuple) else (g,)) if w]

        return findall_wrapped

    def findall(data: bytes) -> list[bytes]:
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos <= end:
            spans = match(data, pos, end)
            start, stop = spans[0]
            if start < 0:
                break
            if len(spans) == 1:
                out.append(data[start:stop])
            else:
                out.extend(data[s:e] for s, e in spans[1:] if e > s >= 0)
            pos = stop if stop > pos else pos + 1  # an empty match must still move on
        return out

    return findall


@lru_cache(maxsize=1 << 16)  # asked several times per key while compiling
def _pivot(key: tuple[Any, ...]) -> str:
    """The word the candidate search looks up: a phrase's longest whole word, or a lone
    prefix.

    Any whole word of a phrase would do (each must occur); the longest is, as a rule, the
    rarest: "in short supply" is looked for as "supply", "on the NYSE" as "nyse", where the
    first word would make every document with "in" or "on" a candidate.
    """
    words = key[1]
    if len(words) == 1:
        return words[0]
    return max(words[:-1] if key[2] else words, key=len)


def _gate_pattern(word_keys: Iterable[tuple[Any, ...]]) -> str | None:
    """One alternation of every term's pivot word, capturing the word found (the engine
    drops the captures: with zero-width boundaries a match is the word itself).

    Searched in the folded fields joined by newlines, with `_` turned into a space so that
    RE2's zero-width ASCII `\\b` is a (superset of the) token boundary. Boundaries are
    zero-width where possible so a match never swallows the next word's boundary.
    """
    # (left boundary, right boundary) -> words; the boundary is dropped (a superset) when
    # the edge character is not ASCII, as RE2's \b knows only ASCII word characters.
    groups: dict[tuple[bool, bool], set[str]] = {}
    for key in word_keys:
        pivot = _pivot(key)
        whole = not key[2] or len(key[1]) > 1  # else a lone prefix: no right boundary
        # (a spaceless character is never ASCII)
        groups.setdefault((pivot[0] < "\x80", whole and pivot[-1] < "\x80"), set()).add(pivot)
    branches = []
    for (left, right), words in sorted(groups.items(), reverse=True):
        branches.append(
            ("\\b" if left else "") + f"({_alternation(words)})" + ("\\b" if right else "")
        )
    return "|".join(branches) or None


class _TokenIndex:
    """The candidate search by token sets: the keys whose whole words are all tokens of a
    text (and the lone prefixes that start one)."""

    def __init__(self, word_keys: list[tuple[Any, ...]]) -> None:
        # pivot -> the keys that are that word alone, found with it (also a phrase whose
        # only whole word it is, before a final prefix)
        self.words: dict[str, list[tuple[Any, ...]]] = {}
        # pivot -> the phrases looked for by it, with their whole words
        self.phrases: dict[str, list[tuple[tuple[Any, ...], tuple[str, ...]]]] = {}
        self.by_prefix: dict[int, dict[str, list[tuple[Any, ...]]]] = {}
        for key in word_keys:
            words = key[1]
            if key[2]:  # a prefix
                if len(words) == 1:
                    head = words[0]
                    self.by_prefix.setdefault(len(head), {}).setdefault(head, []).append(key)
                    continue
                words = words[:-1]  # the whole words
            if len(words) == 1:
                self.words.setdefault(words[0], []).append(key)
            else:
                self.phrases.setdefault(_pivot(key), []).append((key, words))
        # No word to look for has a character beyond ASCII (most rule sets).
        self.ascii = "".join(self.words).isascii() and all(
            "".join(whole).isascii() for keys in self.phrases.values() for _, whole in keys
        )
        self._prefix_findall: Any = None  # compiled on first use: most rule sets never need it

    def candidates(self, folded: str, tokens: set[str]) -> set[tuple[Any, ...]]:
        """The keys that may occur in `folded`, whose tokens are (a superset of) `tokens`."""
        found: set[tuple[Any, ...]] = set()
        words, phrases = self.words, self.phrases
        for word in words.keys() & tokens:  # (iterates the tokens, the smaller side)
            found.update(words[word])
        for word in phrases.keys() & tokens:
            found.update(key for key, whole in phrases[word] if tokens.issuperset(whole))
        if self.by_prefix:
            if self._prefix_findall is None:
                prefixes = {p for t in self.by_prefix.values() for p in t}
                self._prefix_findall = _raw_findall(_prefix_regex(prefixes))
            # RE2 finds the longest prefix at each word start; shorter ones are its prefixes
            for head in self._prefix_findall(folded.encode()):
                head = head.decode()
                for length in range(1, len(head) + 1):
                    found.update(self.by_prefix.get(length, {}).get(head[:length], ()))
        return found


def _prefix_regex(prefixes: set[str]) -> Any:
    """An RE2 alternation finding, at word starts, the longest of `prefixes`."""
    import re2

    spaceless = {p for p in prefixes if normalize.is_spaceless(p[0])}
    branches = []
    if prefixes - spaceless:
        branches.append(f"(?:^|{_NOT_WORD})({_alternation(prefixes - spaceless)})")
    if spaceless:
        branches.append(f"({_alternation(spaceless)})")
    return re2.compile("|".join(branches), _re2_options())


class _FieldTokens:
    """One field's folded words; their original offsets are computed only for evidence."""

    __slots__ = ("_in_place", "_spans", "folded", "positions", "text", "words")

    def __init__(self, text: str, folded: str) -> None:
        self.text = text
        self.folded = folded
        self.words = normalize.words_of(folded)  # the same tokens `tokenize` gives
        self.positions: dict[str, list[int]] = {}
        self._spans: tuple[list[int], list[int]] | None = None
        self._in_place = False

    def where(self, word: str) -> list[int]:
        found = self.positions.get(word)
        if found is None:
            found = self.positions[word] = []
            words, i = self.words, -1
            if word in words:
                try:
                    while True:
                        i = words.index(word, i + 1)
                        found.append(i)
                except ValueError:
                    pass
        return found

    def spans(self, last: int) -> tuple[list[int], list[int]]:
        """The start and end offsets in `text` of the tokens, up to token `last` at least."""
        spans = self._spans
        if spans is None:
            self._in_place = normalize.fold_with_map(self.text)[1] is None
            if self._in_place:
                spans = self._spans = ([], [])  # found on demand, see below
            else:
                toks = normalize.tokenize(self.text)
                spans = self._spans = (list(toks.starts), list(toks.ends))
        starts, ends = spans
        if last >= len(starts) and self._in_place:
            # Folding kept every offset: find the tokens up to `last`, all most hits need.
            normalize.extend_spans(self.folded, self.words, starts, ends, last + 1)
        return spans


class _Doc:
    """One document being evaluated: lazily tokenised fields and term occurrences."""

    __slots__ = ("candidates", "folded", "keys", "occ", "plans", "regexes", "texts", "tokens")

    def __init__(
        self,
        texts: dict[str, str],
        candidates: set[tuple[Any, ...]],
        regexes: dict[tuple[Any, ...], Any],
        folded: dict[str, str],
        keys: dict[int, tuple[Any, ...]],
        plans: dict[int, Any],
    ) -> None:
        self.texts = texts
        self.keys = keys  # id(term) -> lexical key
        # id(node) -> its evaluation plan (`_near_plan`, `_or_plan`), shared by documents
        self.plans = plans
        self.candidates = candidates  # lexical keys that may occur (in some field)
        self.regexes = regexes
        self.folded = folded
        self.tokens: dict[str, _FieldTokens] = {}
        self.occ: dict[tuple[tuple[Any, ...], str], list[_Occ]] = {}

    def field_tokens(self, name: str) -> _FieldTokens:
        toks = self.tokens.get(name)
        if toks is None:
            text = self.texts[name]
            folded = self.folded.get(name)
            toks = self.tokens[name] = _FieldTokens(text, folded or normalize.fold(text))
        return toks

    def evidence(self, hits: list[_RawHit]) -> tuple[Hit, ...]:
        """The distinct hits with their offsets, in field order, then by position (ties in
        the order found)."""
        last: dict[str, int] = {}  # per field, the last token a hit ends with
        for _, name, occ in hits:
            if occ[1] > last.get(name, -1):
                last[name] = occ[1]
        spans = {name: self.field_tokens(name).spans(i) for name, i in last.items()}
        found: dict[tuple[str, str, int, int], None] = {}
        for term, name, occ in hits:
            if occ[0] < 0:  # a regex hit carries its own span
                found[(term.text, name, occ[2], occ[3])] = None
            else:
                starts, ends = spans[name]
                found[(term.text, name, starts[occ[0]], ends[occ[1]])] = None
        order = _FIELD_ORDER
        ranked = sorted(found, key=lambda h: (order.get(h[1], 99), h[2], h[3]))
        return tuple(Hit(*h) for h in ranked)

    def occurrences(self, term: Term, name: str, key: tuple[Any, ...]) -> list[_Occ]:
        """Where the term of lexical key `key` occurs in field `name`."""
        if key not in self.candidates:
            return []
        found = self.occ.get((key, name))
        if found is None:
            found = self.occ[(key, name)] = self._locate(term, key, name)
        return found

    def _locate(self, term: Term, key: tuple[Any, ...], name: str) -> list[_Occ]:
        if term.regex is not None:
            pattern = self.regexes[key]
            return [(-1, -1, m.start(), m.end()) for m in pattern.finditer(self.texts[name])]
        toks = self.field_tokens(name)
        all_words = toks.words
        words, n = term.words, len(term.words)
        if term.prefix and n == 1:
            head = words[0]
            return [(i, i, -1, -1) for i, w in enumerate(all_words) if w.startswith(head)]
        out: list[_Occ] = []
        for i in toks.where(words[0]):
            last = i + n - 1
            if last >= len(all_words):
                continue
            if n > 1:
                if all_words[i + 1 : last] != list(words[1:-1]):
                    continue
                tail = all_words[last]
                if not (tail.startswith(words[-1]) if term.prefix else tail == words[-1]):
                    continue
            out.append((i, last, -1, -1))
        return out


# A NEAR's terms by field, with their lexical keys, worked out once per compiled node:
# per field searched, the (term, key) pairs of the left and of the right operand, and
# each side's keys as a set (most documents have none of a big alias's words).
_Side = list[tuple[Term, tuple[Any, ...]]]
_Keys = frozenset[tuple[Any, ...]]
_NearPlan = list[tuple[str, _Side, _Keys, _Side, _Keys]]


def _near_plan(node: Near, keys: Mapping[int, tuple[Any, ...]]) -> _NearPlan:
    left_terms, right_terms = terms(node.left), terms(node.right)
    names = dict.fromkeys(n for t in left_terms + right_terms for n in _fields(t))

    def side(ts: list[Term], name: str) -> _Side:
        return [(t, keys[id(t)]) for t in ts if name in _fields(t)]

    plan: _NearPlan = []
    for name in names:
        left, right = side(left_terms, name), side(right_terms, name)
        plan.append(
            (name, left, frozenset(k for _, k in left), right, frozenset(k for _, k in right))
        )
    return plan


# A hit before its offsets are resolved: only matching rules pay for offsets.
_RawHit = tuple[Term, str, _Occ]


def _evaluate(node: Node, doc: _Doc) -> tuple[bool, list[_RawHit]]:
    """Truth of `node` and the positive hits of its satisfied parts."""
    cls = node.__class__
    if cls is Term:
        # Most terms of a big alias are absent: answer those before any per-field work.
        key = doc.keys[id(node)]
        if key not in doc.candidates:
            return False, []
        hits = [
            (node, name, occ)
            for name in _fields(node)  # type: ignore[arg-type]
            if name in doc.texts
            for occ in doc.occurrences(node, name, key)  # type: ignore[arg-type]
        ]
        return bool(hits), hits  # type: ignore[return-value]
    if cls is Or:
        keys, cands = doc.keys, doc.candidates
        plan = doc.plans.get(id(node), _UNPLANNED)
        if plan is _UNPLANNED:
            plan = doc.plans[id(node)] = _or_plan(node, keys)  # type: ignore[arg-type]
        if plan is not None and plan.isdisjoint(cands):  # an alias none of whose words occur
            return False, []
        hits, any_true = [], False
        for child in node.children:  # type: ignore[union-attr]
            # an alias's absent words, skipped without a call
            if child.__class__ is Term and keys[id(child)] not in cands:
                continue
            truth, child_hits = _evaluate(child, doc)
            if truth:
                any_true = True
                hits.extend(child_hits)
        return any_true, hits
    if cls is And:
        hits = []
        for child in node.children:  # type: ignore[union-attr]
            truth, child_hits = _evaluate(child, doc)
            if not truth:
                return False, []
            hits.extend(child_hits)
        return True, hits
    if cls is Not:
        truth, _ = _evaluate(node.child, doc)  # type: ignore[union-attr]
        return not truth, []
    if cls is Near:
        return _evaluate_near(node, doc)  # type: ignore[arg-type]
    raise TypeError(f"unexpanded alias @{node.name}" if isinstance(node, AliasRef) else node)


_UNPLANNED = object()


def _or_plan(node: Or, keys: Mapping[int, tuple[Any, ...]]) -> frozenset[tuple[Any, ...]] | None:
    """The keys of an OR of terms only (an alias), or None when it has other operands."""
    if any(child.__class__ is not Term for child in node.children):
        return None
    return frozenset(keys[id(c)] for c in node.children)


def _evaluate_near(node: Near, doc: _Doc) -> tuple[bool, list[_RawHit]]:
    plan = doc.plans.get(id(node))
    if plan is None:
        plan = doc.plans[id(node)] = _near_plan(node, doc.keys)
    distance, cands = node.distance, doc.candidates
    hits: dict[_RawHit, None] = {}  # a dict: dense text pairs the same occurrences often
    for name, left, left_keys, right, right_keys in plan:
        if name not in doc.texts or left_keys.isdisjoint(cands) or right_keys.isdisjoint(cands):
            continue
        lefts = [(t, o) for t, k in left if k in cands for o in doc.occurrences(t, name, k)]
        if not lefts:
            continue
        rights = [(t, o) for t, k in right if k in cands for o in doc.occurrences(t, name, k)]
        if not rights:
            continue
        for lt, lo in lefts:
            lo_first, lo_last = lo[0], lo[1]
            for rt, ro in rights:
                # words strictly between the two occurrences; overlapping ones do not count
                r_first = ro[0]
                gap = r_first - lo_last - 1 if r_first > lo_last else lo_first - ro[1] - 1
                if 0 <= gap <= distance:
                    hits[(lt, name, lo)] = None
                    hits[(rt, name, ro)] = None
    return bool(hits), list(hits)


class RuleSet:
    """Every item's rules compiled into one matcher (see the module docstring)."""

    def __init__(self, rules: list[CompiledRule], *, prefilter: Prefilter = "gate") -> None:
        import re2

        self.rules = rules
        self.prefilter = prefilter
        rule_terms: list[list[Term]] = []
        rule_positives: list[list[Term]] = []
        for rule in rules:
            every: list[Term] = []
            positive: list[Term] = []
            _collect_terms(rule.node, True, every, positive)
            rule_terms.append(every)
            rule_positives.append(positive)
        # id(term) -> lexical key; the rules of one compile share their aliases' Term objects
        instances = {id(t): t for ts in rule_terms for t in ts}
        keys = self._keys = {i: _lex_key(t) for i, t in instances.items()}
        self._plans: dict[int, Any] = {}
        self._regexes = {
            keys[i]: compile_regex(t.regex, t.flags)
            for i, t in instances.items()
            if t.regex is not None
        }
        word_keys: dict[str, dict[tuple[Any, ...], None]] = {}
        regex_keys: dict[str, dict[tuple[Any, ...], None]] = {}
        # Equal terms of several rules are one (key, fields) pair, in rule order. (A field
        # scope is never empty, so `()` can stand for "the default fields".)
        placed = dict.fromkeys((keys[i], t.fields or ()) for i, t in instances.items())
        for key, fields in placed:
            target = regex_keys if key[0] == "re" else word_keys
            for name in fields or DEFAULT_FIELDS:
                target.setdefault(name, {})[key] = None
        self._word_fields = [n for n in FIELDS if n in word_keys]
        self._regex_fields = [n for n in FIELDS if n in regex_keys]
        self._fields = [n for n in FIELDS if n in word_keys or n in regex_keys]
        self._sets = {
            n: _FieldSet(
                list(word_keys.get(n, ())), list(regex_keys.get(n, ())), prefilter == "re2-set"
            )
            for n in self._fields
        }
        self._all_word_keys = {k: None for ks in word_keys.values() for k in ks}
        self._field_word_keys = word_keys
        self._token_indexes: dict[str, _TokenIndex] = {}  # built on first use: rarely needed
        self._joined_index: _TokenIndex | None = None  # see _all_tokens
        self._gate_search: Any = None  # see _shares_a_word
        # Per rule, the conjunctions one of which must hold (`_conjuncts`), each watched
        # through one clause, its anchor: `_conjunct_trigger` maps each key of an anchor to
        # the conjunctions it watches for, as their rule and other clauses.
        # The anchor words: those of every anchor, and every word key of the rules that
        # can hold with no positive term (their NOT terms matter too).
        conjunct_trigger: dict[tuple[Any, ...], list[tuple[int, _Conjunct]]] = {}
        self._unconditional: list[int] = []  # evaluated whenever a candidate occurs
        anchor_keys: dict[tuple[Any, ...], None] = {}
        self._anchored = True  # False: some rule has no word anchor; skip the anchor test
        for index, (rule, ts) in enumerate(zip(rules, rule_terms, strict=True)):
            forms = [()] if rule.always else _conjuncts(rule.node, keys)
            if () in forms:
                self._unconditional.append(index)
                anchor_keys.update((keys[id(t)], None) for t in ts if t.regex is None)
                continue
            for conjunct in forms:
                anchor = _anchor(conjunct)
                if any(k[0] == "re" for k in anchor):
                    self._anchored = False
                anchor_keys.update((k, None) for k in anchor if k[0] == "w")
                watched = (index, tuple(c for c in conjunct if c is not anchor))
                for key in anchor:
                    conjunct_trigger.setdefault(key, []).append(watched)
        self._conjunct_trigger = conjunct_trigger
        firsts = sorted({_pivot(k) for k in anchor_keys})
        self._anchor_words: tuple[str, ...] | None = None
        self._anchor_search: Any = None
        self._anchor_first: Any = None  # the same search, for a batch (match_many)
        # A phrase whose every word is short ("S-1": "s" "1") is no anchor by its pivot:
        # "s" ends every "OpenAI's". Such phrases are searched whole, with RE2.
        phrases = {
            k
            for k in anchor_keys
            if len(k[1]) > 1 and len(_pivot(k)) <= _SHORT and all(w.isascii() for w in k[1])
        }
        # (only ASCII words: a substring test only ever runs on ASCII text)
        shortest = min((len(w) for w in firsts if w.isascii()), default=_SHORT + 1)
        if len(firsts) <= _SUBSTRING_ANCHORS and shortest > _SHORT:
            self._anchor_words = tuple(firsts)  # a substring test per word suffices
        else:
            # Searched in the ORIGINAL fields, so most documents are never folded, with their
            # ASCII letters lowercased (bytes.lower()): that is the fold unless a character
            # that is (or folds into) part of a word lies beyond ASCII -- and any such
            # character is a hit too. (A case-insensitive pattern would compile 2x slower.)
            words_re = _gate_pattern(k for k in anchor_keys if k not in phrases)
            branches = [words_re.replace("(", "(?:")] if words_re else []
            branches += [_phrase_pattern(k) for k in sorted(phrases)]
            pattern = "|".join([*branches, _WORDISH_NON_ASCII_RE2])
            anchor_re = re2.compile(pattern.encode(), _re2_options())
            self._anchor_search = _raw_search(anchor_re)
            self._anchor_first = _raw_first(anchor_re)
        # lexical key -> the rules in which a term with that key is positive (what the
        # reference evaluates)
        self._trigger: dict[tuple[Any, ...], set[int]] = {}
        if prefilter == "none":
            for index, positive in enumerate(rule_positives):
                for term in positive:
                    self._trigger.setdefault(keys[id(term)], set()).add(index)
        self._always = [i for i, r in enumerate(rules) if r.always]
        # With no candidate at all, only the always-rules can hold, and without hits.
        nothing = _Doc({}, set(), self._regexes, {}, self._keys, self._plans)
        self._when_nothing = [
            RuleMatch(rules[i].item, rules[i].rule, ())
            for i in self._always
            if _evaluate(rules[i].node, nothing)[0]
        ]

    @classmethod
    def compile(
        cls,
        rules: Iterable[tuple[str, RuleName, str]],
        aliases: Mapping[str, Sequence[str]],
        *,
        prefilter: Prefilter = "gate",
    ) -> RuleSet:
        """Parse and compile `(item_id, "signal"|"confirm", source)` rules.

        Raises `RuleSyntaxError` for the first bad rule; its message names item and rule.
        """
        compiled: list[CompiledRule] = []
        expanded: dict[str, Node] = {}
        for item, name, source in rules:
            try:
                node = parse_rule(source, aliases, _expanded=expanded)
            except RuleSyntaxError as exc:
                raise RuleSyntaxError(
                    f"{item}.{name}: {exc.message}", exc.source, exc.position
                ) from None
            compiled.append(CompiledRule(item, name, source, node, can_match_empty(node)))
        return cls(compiled, prefilter=prefilter)

    def _all_tokens(self) -> _TokenIndex:
        """The token index of every word key, for the word fields joined (built on first
        use, like the per-field ones: a rule set may never see a document with a word)."""
        if self._joined_index is None:
            self._joined_index = _TokenIndex(list(self._all_word_keys))
        return self._joined_index

    def _token_index(self, name: str) -> _TokenIndex:
        index = self._token_indexes.get(name)
        if index is None:
            keys = list(self._field_word_keys[name])
            index = self._token_indexes[name] = _TokenIndex(keys)
        return index

    def _candidates(
        self, texts: dict[str, str], anchor_hit: bool | None = None
    ) -> tuple[set[tuple[Any, ...]], list[tuple[str, str]]]:
        """Lexical keys of the terms that may occur in some field (a superset), and the
        folded fields. `anchor_hit`: the anchor test's answer when the caller has it."""
        found: set[tuple[Any, ...]] = set()
        anchors_tested = False
        if self.prefilter == "gate" and self._anchored and self._word_fields:
            # The anchor test, before any folding (see the module docstring).
            raw = "\n".join([texts[n] for n in self._word_fields if n in texts])
            words = self._anchor_words
            if anchor_hit is not None:
                hit = anchor_hit
                anchors_tested = True
            elif words is None:
                hit = self._anchor_search(raw.encode().replace(b"_", b" ").lower())
                anchors_tested = True
            elif raw.isascii():  # then folding is lower(); else the folded test below
                lowered = raw.lower()
                hit = any(w in lowered for w in words)  # a substring: a superset of a word
                anchors_tested = True
            else:
                hit = True
            if raw and not hit:
                # only an always-rule can hold, and only a regex of one may matter
                self._regex_candidates(texts, found)
                if not found:
                    return found, []
        checked = [(n, normalize.fold_checked(texts[n])) for n in self._word_fields if n in texts]
        folded = [(n, f) for n, (f, _) in checked]
        if self.prefilter == "gate":
            if folded:
                joined = "\n".join(f for _, f in folded)
                words = self._anchor_words
                if (
                    self._anchored
                    and not anchors_tested
                    and words is not None
                    and not any(w in joined for w in words)
                ):
                    self._regex_candidates(texts, found)  # as above
                    if not found:
                        return found, folded
                index = self._all_tokens()
                if index.ascii or all(ascii_only for _, (_, ascii_only) in checked):
                    # The words looked for or those of the document are ASCII: the ASCII runs
                    # of the fields joined hold every token that can be one of them.
                    found.update(index.candidates(joined, set(normalize.ascii_words_of(joined))))
                elif self._shares_a_word(joined.encode().replace(b"_", b" ")):
                    # Some rule may share a word with the document (UTF-8 bytes skip the
                    # wrapper's str offset bookkeeping; the pattern's ASCII classes mean the
                    # same on bytes). An ASCII \b may cut a word ("caf|é"), so no word the
                    # gate finds is sure: take each field's tokens.
                    for name, text in folded:
                        words = set(normalize.words_of(text))
                        found.update(self._token_index(name).candidates(text, words))
        elif self.prefilter == "tokens":
            for name, text in folded:
                words = set(normalize.words_of(text))
                found.update(self._token_index(name).candidates(text, words))
        elif self.prefilter == "re2-set":
            for name, text in folded:
                fs = self._sets[name]
                found.update(fs.word_keys[i] for i in fs.words.Match(text) or ())
        else:
            for name, _ in folded:
                found.update(self._sets[name].word_keys)
        self._regex_candidates(texts, found)
        return found, folded

    def _shares_a_word(self, data: bytes) -> bool:
        """Whether the gate (`_gate_pattern` of every word key) occurs in `data`, the folded
        fields joined as UTF-8 with `_` turned into a space (a superset of a word key
        occurring). Compiled on first use: only documents with words beyond ASCII ask, and
        only when some rule looks for such words."""
        if self._gate_search is None:
            import re2

            gate = _gate_pattern(self._all_word_keys) or "$^"
            # Zero-width boundaries, so without captures RE2 answers with its DFA alone.
            pattern = re2.compile(gate.replace("(", "(?:").encode(), _re2_options())
            self._gate_search = _raw_search(pattern)
        return bool(self._gate_search(data))

    def _regex_candidates(self, texts: dict[str, str], found: set[tuple[Any, ...]]) -> None:
        """Add the keys of the regex terms that occur in `texts` to `found`."""
        for name in self._regex_fields:
            if name in texts:
                fs = self._sets[name]
                found.update(fs.regex_keys[i] for i in fs.regexes.Match(texts[name]) or ())

    def match(self, doc: Mapping[str, str]) -> list[RuleMatch]:
        """The rules `doc` satisfies, in compile order, each with its positive hits.

        `doc` maps field names (`models.FIELDS`) to plain text; missing fields are empty.
        Hit offsets index into those strings.
        """
        return self._match_texts(_texts(doc, self._fields))

    def match_many(self, docs: Iterable[Mapping[str, str]]) -> list[list[RuleMatch]]:
        """`[self.match(doc) for doc in docs]`, with one anchor search over the batch.

        Most news shares no word with any rule. One search of the documents joined (a
        newline separates them, and no anchor word spans one) finds those that contain an
        anchor word -- one RE2 scan for many anchors, `str.find` of each for a few -- so
        each of the others costs a join instead of a Python round of the anchor test. Of
        the rest, those whose words are ASCII are not even folded: that is `lower()`.
        Used by ingest and re-matching.
        """
        batch = [_texts(doc, self._fields) for doc in docs]
        fields = self._word_fields
        if self.prefilter != "gate" or not self._anchored or not fields or len(batch) < 2:
            return [self._match_texts(texts) for texts in batch]
        raws = ["\n".join([t[n] for n in fields if n in t]) for t in batch]
        hits: list[bool | None]
        if self._anchor_words is not None:
            hits = self._anchor_hits_by_substring(raws, self._anchor_words)
        else:
            try:
                hits = self._anchor_hits_by_re2(raws)
            except UnicodeEncodeError:  # a lone surrogate: match() replaces it, one by one
                return [self.match(texts) for texts in batch]
        # Without an anchor word (and no regex term to look for), only the always-rules hold.
        skip = not self._regex_fields
        index = self._all_tokens()
        out: list[list[RuleMatch]] = []
        for texts, raw, hit in zip(batch, raws, hits, strict=True):
            if not raw:
                out.append(self._match_texts(texts))
            elif hit is False and skip:
                out.append(list(self._when_nothing))
            elif hit and normalize.ascii_words_only(raw):
                lowered = raw.lower()  # the fold of such text
                found = index.candidates(lowered, set(normalize.ascii_words_of(lowered)))
                if not skip:
                    self._regex_candidates(texts, found)
                out.append(self._match_candidates(texts, found, {}))
            else:
                out.append(self._match_texts(texts, hit))
        return out

    def _anchor_hits_by_re2(self, raws: list[str]) -> list[bool | None]:
        """Per document, whether the anchor pattern occurs (see __init__), in one scan."""
        data = [raw.encode().replace(b"_", b" ") for raw in raws]
        joined = b"\n".join(data).lower()  # see the anchor pattern in __init__
        return _flag_documents(joined, [len(d) for d in data], [self._anchor_first])

    def _anchor_hits_by_substring(
        self, raws: list[str], words: tuple[str, ...]
    ) -> list[bool | None]:
        """Per ASCII document, whether an anchor word occurs in it lowered (a superset of a
        word occurring); None for the others, which `_candidates` tests folded."""
        ascii_docs = [raw.isascii() for raw in raws]
        kept = [raw if plain else "" for raw, plain in zip(raws, ascii_docs, strict=True)]
        joined = "\n".join(kept).lower()
        finders = [lambda text, pos, w=w: text.find(w, pos) for w in words]
        flags = _flag_documents(joined, [len(k) for k in kept], finders)
        return [flag if plain else None for flag, plain in zip(flags, ascii_docs, strict=True)]

    def _possible(self, candidates: set[tuple[Any, ...]]) -> set[int]:
        """The rules that can hold when only the `candidates` keys may occur: those with a
        conjunction every clause of which has a candidate, and the unconditional ones."""
        todo = set(self._unconditional)
        watching = self._conjunct_trigger
        for key in watching.keys() & candidates:
            for index, rest in watching[key]:
                if index not in todo:
                    for clause in rest:
                        if clause.isdisjoint(candidates):
                            break
                    else:
                        todo.add(index)
        return todo

    def _match_texts(
        self, texts: dict[str, str], anchor_hit: bool | None = None
    ) -> list[RuleMatch]:
        try:
            candidates, folded = self._candidates(texts, anchor_hit)
        except UnicodeEncodeError:
            # lone surrogates cannot be encoded for RE2; U+FFFD keeps every offset
            texts = {n: _SURROGATE.sub("\ufffd", v) for n, v in texts.items()}
            candidates, folded = self._candidates(texts)
        return self._match_candidates(texts, candidates, dict(folded))

    def _match_candidates(
        self, texts: dict[str, str], candidates: set[tuple[Any, ...]], folded: dict[str, str]
    ) -> list[RuleMatch]:
        """Evaluate the rules that the candidate keys make possible. `folded`: the fields
        folded so far; the others are folded if evaluation needs them."""
        if not candidates:
            return list(self._when_nothing)
        if self.prefilter == "none":  # the reference evaluates every triggered rule
            todo = set(self._always)
            for key in candidates:
                todo.update(self._trigger.get(key, ()))
        else:
            todo = self._possible(candidates)
            if not todo:
                return []
        state = _Doc(texts, candidates, self._regexes, folded, self._keys, self._plans)
        out: list[RuleMatch] = []
        for index in sorted(todo):
            rule = self.rules[index]
            truth, hits = _evaluate(rule.node, state)
            if truth:
                out.append(RuleMatch(rule.item, rule.rule, state.evidence(hits)))
        return out


def _flag_documents(joined: Any, lengths: list[int], finders: list[Any]) -> list[bool | None]:
    """Which of the documents joined by one separator (of the given lengths) each finder
    (`(text, pos) -> start or -1`) finds something in; after a find, the search moves on
    to the next document."""
    starts = list(accumulate((n + 1 for n in lengths[:-1]), initial=0))
    hits: list[bool | None] = [False] * len(lengths)
    end = len(joined)
    for find in finders:
        pos = 0
        while pos < end:
            at = find(joined, pos)
            if at < 0:
                break
            index = bisect_right(starts, at) - 1
            hits[index] = True
            if index + 1 == len(starts):
                break
            pos = starts[index + 1]
    return hits


def _texts(doc: Mapping[str, str], fields: Iterable[str]) -> dict[str, str]:
    """The non-empty text fields of `doc` among `fields`, those the rules search."""
    return {n: v for n in fields if isinstance(v := doc.get(n), str) and v}


def document(entry: Entry, feed_id: str, feed_title: str | None = None) -> dict[str, str]:
    """The matchable fields of an entry (`models.FIELDS`), as plain strings."""
    return {
        "title": entry.title or "",
        "summary": entry.summary or "",
        "url": entry.link or "",
        "feed": f"{feed_id} {feed_title}" if feed_title else feed_id,
        "author": entry.author or "",
        "category": " | ".join(entry.categories),
    }
