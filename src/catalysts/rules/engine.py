"""Compile many rules into one matcher; match documents; return evidence.

Two stages, so the cost per document barely grows with the number of rules:

1. candidates: one word of every term of every rule (its pivot: a phrase's longest whole
   word) goes into one RE2 alternation (a DFA: one linear pass in C over the folded
   fields, ASCII word boundaries, so it can only over-report). Most documents share no
   word with any rule and stop here; for the rest, the words it found name the candidate
   terms (in any field: stage 2 is exact), and a phrase stays one only if all its whole
   words are tokens of the document;
2. exact evaluation, only for rules whose needed clauses all have a candidate (plus the
   few rules that can hold with no positive term, such as `NOT spam`): the field is
   tokenised, candidate terms are located as whole-word token sequences, and the boolean
   logic runs, collecting the positive hits (offsets into the original text) as evidence.

Before stage 1 the gate asks a cheaper question: does the document contain any ANCHOR
word? Every rule that is not an always-rule needs at least one term of some clause (an
AND needs each of its parts, an OR one of them), and the smallest such clause is its
anchor; a document with no anchor word can satisfy no rule, so the full candidate search
runs only for the few that have one. With a handful of anchor words (re-matching one
edited item over the whole store) the question is a few substring tests; with many, one
RE2 search without captures.

Other stage-1 strategies are kept selectable for the benchmark that compares them and
for tests that cross-check them: `prefilter="tokens"` (token sets only), `"re2-set"` (one
RE2 Set pattern per term: ~50x slower than the gate with thousands of terms, as RE2's
DFA must track which of them matched) and `"none"` (evaluate every rule: the reference).
Measured by `benchmarks/bench_match.py`.
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
    """The stage-1 matcher of one field: an RE2 Set (folded text) and one for regexes."""

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


def _clauses(
    node: Node, keys: Mapping[int, tuple[Any, ...]]
) -> list[frozenset[tuple[Any, ...]]] | None:
    """Lexical keys the node needs: it can hold only if, for EVERY clause, a term with one
    of the clause's keys occurs. None when it can hold with no positive term present.
    `keys` maps id(term) to its lexical key."""
    cls = node.__class__
    if cls is Term:
        return [frozenset((keys[id(node)],))]
    if cls is Or:
        union: set[tuple[Any, ...]] = set()
        for child in node.children:  # type: ignore[union-attr]
            if child.__class__ is Term:  # the common case, an alias: no list to build
                union.add(keys[id(child)])
                continue
            needed = _clauses(child, keys)
            if not needed:
                return None
            union.update(needed[0] if len(needed) == 1 else _anchor(needed))
        return [frozenset(union)]
    if cls is And:
        children = node.children  # type: ignore[union-attr]
        needed = [c for child in children for c in (_clauses(child, keys) or ())]
        return needed or None
    if cls is Near:
        left = _clauses(node.left, keys)  # type: ignore[union-attr]
        right = _clauses(node.right, keys)  # type: ignore[union-attr]
        return (left or []) + (right or []) or None
    return None  # Not, AliasRef: can hold with no positive term


def _anchor(clauses: list[frozenset[tuple[Any, ...]]]) -> frozenset[tuple[Any, ...]]:
    """The clause to watch for: word terms only if possible, fewest keys, longest words."""

    if len(clauses) == 1:
        return clauses[0]
    best, best_cost = clauses[0], (2, 0, 0)
    for clause in clauses:
        regex, shortest = False, 1 << 30
        for key in clause:
            if key[0] == "re":
                regex = True
            elif len(_pivot(key)) < shortest:
                shortest = len(_pivot(key))
        cost = (int(regex), len(clause), -shortest)
        if cost < best_cost:
            best, best_cost = clause, cost
    return best


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


def _whole_words(key: tuple[Any, ...]) -> tuple[str, ...]:
    """The words a word key's term needs as whole tokens: all but a final prefix."""
    return key[1][:-1] if key[2] else key[1]


@lru_cache(maxsize=1 << 16)  # asked several times per key while compiling
def _pivot(key: tuple[Any, ...]) -> str:
    """The word stage 1 looks for: a phrase's longest whole word, or a lone prefix.

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
    """The alternative stage 1: set intersection on the field's folded tokens."""

    def __init__(self, word_keys: list[tuple[Any, ...]]) -> None:
        self.by_pivot: dict[str, list[tuple[Any, ...]]] = {}
        self.by_prefix: dict[int, dict[str, list[tuple[Any, ...]]]] = {}
        for key in word_keys:
            words, prefix = key[1], key[2]
            if prefix and len(words) == 1:
                self.by_prefix.setdefault(len(words[0]), {}).setdefault(words[0], []).append(key)
            else:
                self.by_pivot.setdefault(_pivot(key), []).append(key)
        self._prefix_re: Any = None  # compiled on first use: most rule sets never need it

    def keys_for(self, word: str) -> list[tuple[Any, ...]]:
        """Keys whose pivot word is `word`, or is a prefix key that `word` starts with."""
        keys = list(self.by_pivot.get(word, ()))
        for length, table in self.by_prefix.items():
            if length <= len(word):
                keys.extend(table.get(word[:length], ()))
        return keys

    def candidates(self, folded: str) -> set[tuple[Any, ...]]:
        tokens = set(normalize.words_of(folded))
        found: set[tuple[Any, ...]] = set()
        for word in tokens & self.by_pivot.keys():
            for key in self.by_pivot[word]:
                if tokens.issuperset(_whole_words(key)):
                    found.add(key)
        if self.by_prefix:
            if self._prefix_re is None:
                self._prefix_re = _prefix_regex({p for t in self.by_prefix.values() for p in t})
            # RE2 finds the longest prefix at each word start; shorter ones are its prefixes
            for groups in self._prefix_re.findall(folded):
                for head in groups if isinstance(groups, tuple) else (groups,):
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

    def span(self, first: int, last: int) -> tuple[int, int]:
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
            normalize.extend_spans(self.folded, self.words[: last + 1], starts, ends)
        return starts[first], ends[last]


class _Doc:
    """One document being evaluated: lazily tokenised fields and term occurrences."""

    __slots__ = ("candidates", "folded", "keys", "occ", "plans", "regexes", "texts", "tokens")

    def __init__(
        self,
        texts: dict[str, str],
        candidates: set[tuple[Any, ...]],
        regexes: dict[tuple[Any, ...], Any],
        folded: dict[str, str] | None,
        keys: dict[int, tuple[Any, ...]],
        plans: dict[int, Any],
    ) -> None:
        self.texts = texts
        self.keys = keys  # id(term) -> lexical key
        # id(node) -> its evaluation plan (`_near_plan`, `_or_plan`), shared by documents
        self.plans = plans
        self.candidates = candidates  # lexical keys that may occur (in some field)
        self.regexes = regexes
        self.folded = folded or {}
        self.tokens: dict[str, _FieldTokens] = {}
        self.occ: dict[tuple[tuple[Any, ...], str], list[_Occ]] = {}

    def field_tokens(self, name: str) -> _FieldTokens:
        toks = self.tokens.get(name)
        if toks is None:
            text = self.texts[name]
            folded = self.folded.get(name)
            toks = self.tokens[name] = _FieldTokens(text, folded or normalize.fold(text))
        return toks

    def hit(self, term: Term, name: str, occ: _Occ) -> Hit:
        if occ[0] < 0:  # a regex hit carries its own span
            return Hit(term.text, name, occ[2], occ[3])
        start, end = self.field_tokens(name).span(occ[0], occ[1])
        return Hit(term.text, name, start, end)

    def occurrences(self, term: Term, name: str) -> list[_Occ]:
        key = self.keys.get(id(term)) or _lex_key(term)
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
        return [(t, keys.get(id(t)) or _lex_key(t)) for t in ts if name in _fields(t)]

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
        key = doc.keys.get(id(node))
        if (key if key is not None else _lex_key(node)) not in doc.candidates:  # type: ignore[arg-type]
            return False, []
        hits = [
            (node, name, occ)
            for name in _fields(node)  # type: ignore[arg-type]
            if name in doc.texts
            for occ in doc.occurrences(node, name)  # type: ignore[arg-type]
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
            if child.__class__ is Term:
                key = keys.get(id(child))
                if key is not None and key not in cands:
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
    return frozenset(keys.get(id(c)) or _lex_key(c) for c in node.children)  # type: ignore[arg-type]


def _evaluate_near(node: Near, doc: _Doc) -> tuple[bool, list[_RawHit]]:
    plan = doc.plans.get(id(node))
    if plan is None:
        plan = doc.plans[id(node)] = _near_plan(node, doc.keys)
    distance, cands = node.distance, doc.candidates
    hits: dict[_RawHit, None] = {}  # a dict: dense text pairs the same occurrences often
    for name, left, left_keys, right, right_keys in plan:
        if name not in doc.texts or left_keys.isdisjoint(cands) or right_keys.isdisjoint(cands):
            continue
        lefts = [(t, o) for t, k in left if k in cands for o in doc.occurrences(t, name)]
        if not lefts:
            continue
        rights = [(t, o) for t, k in right if k in cands for o in doc.occurrences(t, name)]
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


def _sorted_hits(hits: list[Hit]) -> tuple[Hit, ...]:
    unique = dict.fromkeys(hits)
    return tuple(sorted(unique, key=lambda h: (_FIELD_ORDER.get(h.field, 99), h.start, h.end)))


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
        self._sets = {
            n: _FieldSet(
                list(word_keys.get(n, ())), list(regex_keys.get(n, ())), prefilter == "re2-set"
            )
            for n in FIELDS
            if n in word_keys or n in regex_keys
        }
        all_word_keys = {k: None for keys in word_keys.values() for k in keys}
        self._field_word_keys = word_keys
        self._token_indexes: dict[str, _TokenIndex] = {}  # built on first use: rarely needed
        self._by_pivot = _TokenIndex(list(all_word_keys))  # gate words -> candidate keys
        # A phrase's whole words: stage 1 saw only its pivot.
        self._rest_words = {
            key: whole for key in all_word_keys if len(whole := _whole_words(key)) > 1
        }
        self._rest_keys = frozenset(self._rest_words)  # `&` iterates the smaller set
        gate = _gate_pattern(all_word_keys)
        options = _re2_options()
        # The gate's boundaries are zero-width, so a match IS the word found: without
        # captures RE2 locates it with its DFAs alone.
        self._gate = (
            re2.compile(gate.replace("(", "(?:").encode(), options) if gate is not None else None
        )
        # Per rule, the clauses it needs (None: an always-rule); and the anchor words: one
        # clause per rule, every word key of the always-rules (their NOT terms matter too).
        self._needs: list[list[frozenset[tuple[Any, ...]]] | None] = []
        anchor_keys: dict[tuple[Any, ...], None] = {}
        self._anchored = True  # False: some rule has no word anchor; skip the anchor test
        for rule, ts in zip(rules, rule_terms, strict=True):
            needed = None if rule.always else _clauses(rule.node, keys)
            self._needs.append(needed)
            if not needed:
                anchor_keys.update((keys[id(t)], None) for t in ts if t.regex is None)
                continue
            anchor = _anchor(needed)
            if any(k[0] == "re" for k in anchor):
                self._anchored = False
            anchor_keys.update((k, None) for k in anchor if k[0] == "w")
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
            anchor_re = re2.compile(pattern.encode(), options)
            self._anchor_search = _raw_search(anchor_re)
            self._anchor_first = _raw_first(anchor_re)
        self._gate_search = _raw_search(self._gate) if self._gate is not None else None
        self._gate_findall = _raw_findall(self._gate) if self._gate is not None else None
        # lexical key -> the rules in which a term with that key is positive
        trigger: dict[tuple[Any, ...], set[int]] = {}
        for index, positive in enumerate(rule_positives):
            for term in positive:
                trigger.setdefault(keys[id(term)], set()).add(index)
        self._trigger = trigger
        self._always = [i for i, r in enumerate(rules) if r.always]
        # With no candidate at all, only the always-rules can hold, and without hits.
        nothing = _Doc({}, set(), self._regexes, None, self._keys, self._plans)
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
        if self.prefilter == "gate" and self._anchored and self._gate is not None:
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
            if folded and self._gate is not None:
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
                # UTF-8 bytes skip the wrapper's str offset bookkeeping; the pattern's ASCII
                # classes mean the same on bytes (a non-ASCII byte is never a word byte).
                data = joined.encode().replace(b"_", b" ")
                if all(ascii_only for _, (_, ascii_only) in checked):
                    # When every word is ASCII, the word found at a position is the whole
                    # token there (or a prefix of it), so the words found name every candidate.
                    keys_for = self._by_pivot.keys_for
                    for word in self._gate_findall(data):  # type: ignore[misc]
                        found.update(keys_for(word.decode()))
                elif not self._gate_search(data):  # type: ignore[misc]
                    pass  # no rule shares a word with this document
                else:
                    # Elsewhere an ASCII \b may cut a word ("caf|é"): take the exact tokens.
                    for name, text in folded:
                        found.update(self._token_index(name).candidates(text))
        elif self.prefilter == "tokens":
            for name, text in folded:
                found.update(self._token_index(name).candidates(text))
        elif self.prefilter == "re2-set":
            for name, text in folded:
                fs = self._sets[name]
                found.update(fs.word_keys[i] for i in fs.words.Match(text) or ())
        else:
            for name, _ in folded:
                found.update(self._sets[name].word_keys)
        self._regex_candidates(texts, found)
        return found, folded

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
        return self._match_texts(_texts(doc))

    def match_many(self, docs: Iterable[Mapping[str, str]]) -> list[list[RuleMatch]]:
        """`[self.match(doc) for doc in docs]`, with one anchor search over the batch.

        Most news shares no word with any rule. One search of the documents joined (a
        newline separates them, and no anchor word spans one) finds those that contain an
        anchor word -- one RE2 scan for many anchors, `str.find` of each for a few -- so
        each of the others costs a join instead of a Python round of the anchor test. Used
        by ingest and re-matching.
        """
        batch = [_texts(doc) for doc in docs]
        if self.prefilter != "gate" or not self._anchored or self._gate is None or len(batch) < 2:
            return [self._match_texts(texts) for texts in batch]
        fields = self._word_fields
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
        return [
            list(self._when_nothing)
            if skip and raw and hit is False
            else self._match_texts(texts, hit if raw else None)
            for texts, raw, hit in zip(batch, raws, hits, strict=True)
        ]

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

    def _match_texts(
        self, texts: dict[str, str], anchor_hit: bool | None = None
    ) -> list[RuleMatch]:
        try:
            candidates, folded = self._candidates(texts, anchor_hit)
        except UnicodeEncodeError:
            # lone surrogates cannot be encoded for RE2; U+FFFD keeps every offset
            texts = {n: _SURROGATE.sub("\ufffd", v) for n, v in texts.items()}
            candidates, folded = self._candidates(texts)
        if not candidates:
            return list(self._when_nothing)
        field_tokens: dict[str, _FieldTokens] = {}
        phrases = candidates & self._rest_keys if self.prefilter != "none" and folded else ()
        if phrases:
            # Stage 1 saw one word of each phrase: keep a phrase only if all its whole
            # words are tokens of the document.
            field_tokens = {name: _FieldTokens(texts[name], text) for name, text in folded}
            present = set().union(*(t.words for t in field_tokens.values()))
            rest = self._rest_words
            candidates = candidates.difference(
                [k for k in phrases if not present.issuperset(rest[k])]
            )
            if not candidates:
                return list(self._when_nothing)
        todo = set(self._always)
        for key in candidates:
            todo.update(self._trigger.get(key, ()))
        if self.prefilter != "none":  # the reference evaluates every triggered rule
            needs = self._needs
            todo = {
                i
                for i in todo
                if (needed := needs[i]) is None or all(not c.isdisjoint(candidates) for c in needed)
            }
        state = _Doc(texts, candidates, self._regexes, dict(folded), self._keys, self._plans)
        state.tokens.update(field_tokens)
        out: list[RuleMatch] = []
        for index in sorted(todo):
            rule = self.rules[index]
            truth, hits = _evaluate(rule.node, state)
            if truth:
                resolved = [state.hit(term, name, occ) for term, name, occ in hits]
                out.append(RuleMatch(rule.item, rule.rule, _sorted_hits(resolved)))
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


def _texts(doc: Mapping[str, str]) -> dict[str, str]:
    """The non-empty text fields of `doc` that rules can search."""
    return {n: v for n, v in doc.items() if n in _FIELD_ORDER and isinstance(v, str) and v}


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
