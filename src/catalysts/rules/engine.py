"""Compile many rules into one matcher; match documents; return evidence.

Two stages, so the cost per document barely grows with the number of rules:

1. candidates: the first word of every term of every rule goes into one RE2 alternation
   (a DFA: one linear pass in C over the folded fields, ASCII word boundaries, so it can
   only over-report). Most documents share no word with any rule and stop here; for the
   rest, the words it found name the candidate terms (in any field: stage 2 is exact);
2. exact evaluation, only for rules with a candidate positive term (plus the few rules that
   can hold with no positive term, such as `NOT spam`): the field is tokenised with
   offsets, candidate terms are located as whole-word token sequences, and the boolean
   logic runs, collecting the positive hits (offsets into the original text) as evidence.

Other stage-1 strategies are kept selectable for the benchmark that compares them and
for tests that cross-check them: `prefilter="tokens"` (token sets only), `"re2-set"` (one
RE2 Set pattern per term: ~50x slower than the gate with thousands of terms, as RE2's
DFA must track which of them matched) and `"none"` (evaluate every rule: the reference).
Measured by `benchmarks/bench_match.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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
    positive_terms,
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
        options = re2.Options()
        options.log_errors = False
        options.max_mem = _SET_MAX_MEM
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
    # tokens hold only letters, digits and marks: never a regex metacharacter
    return "|".join(sorted(words, key=lambda w: (-len(w), w)))


def _gate_pattern(word_keys: Iterable[tuple[Any, ...]]) -> str | None:
    """One alternation of every term's first word, capturing the word found.

    Searched in the folded fields joined by newlines, with `_` turned into a space so that
    RE2's zero-width ASCII `\\b` is a (superset of the) token boundary. Boundaries are
    zero-width where possible so a match never swallows the next word's boundary.
    """
    # (left boundary, right boundary) -> words; the boundary is dropped (a superset) when
    # the edge character is not ASCII, as RE2's \b knows only ASCII word characters.
    groups: dict[tuple[bool, bool], set[str]] = {}
    for key in word_keys:
        words, prefix = key[1], key[2]
        first = words[0]
        whole = not (prefix and len(words) == 1)
        left = first[0].isascii()
        right = whole and first[-1].isascii() and not normalize.is_spaceless(first)
        groups.setdefault((left, right), set()).add(first)
    branches = []
    for (left, right), words in sorted(groups.items(), reverse=True):
        branches.append(
            ("\\b" if left else "") + f"({_alternation(words)})" + ("\\b" if right else "")
        )
    return "|".join(branches) or None


class _TokenIndex:
    """The alternative stage 1: set intersection on the field's folded tokens."""

    def __init__(self, word_keys: list[tuple[Any, ...]]) -> None:
        self.by_first: dict[str, list[tuple[Any, ...]]] = {}
        self.by_prefix: dict[int, dict[str, list[tuple[Any, ...]]]] = {}
        for key in word_keys:
            words, prefix = key[1], key[2]
            if prefix and len(words) == 1:
                self.by_prefix.setdefault(len(words[0]), {}).setdefault(words[0], []).append(key)
            else:
                self.by_first.setdefault(words[0], []).append(key)
        self._prefix_re: Any = None  # compiled on first use: most rule sets never need it

    def keys_for(self, word: str) -> list[tuple[Any, ...]]:
        """Keys whose first word is `word`, or is a prefix key that `word` starts with."""
        keys = list(self.by_first.get(word, ()))
        for length, table in self.by_prefix.items():
            if length <= len(word):
                keys.extend(table.get(word[:length], ()))
        return keys

    def candidates(self, folded: str) -> set[tuple[Any, ...]]:
        tokens = set(normalize.words_of(folded))
        found: set[tuple[Any, ...]] = set()
        for word in tokens & self.by_first.keys():
            for key in self.by_first[word]:
                words, prefix = key[1], key[2]
                inner = words[1:-1] if prefix else words[1:]
                if all(w in tokens for w in inner):
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
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _SET_MAX_MEM
    return re2.compile("|".join(branches), options)


class _FieldTokens:
    """One field's folded words; their original offsets are computed only for evidence."""

    __slots__ = ("_spans", "positions", "text", "words")

    def __init__(self, text: str, folded: str) -> None:
        self.text = text
        self.words = normalize.words_of(folded)  # the same tokens `tokenize` gives
        self.positions: dict[str, list[int]] = {}
        self._spans: tuple[tuple[int, ...], tuple[int, ...]] | None = None

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
        if self._spans is None:
            toks = normalize.tokenize(self.text)
            self._spans = (toks.starts, toks.ends)
        return self._spans[0][first], self._spans[1][last]


class _Doc:
    """One document being evaluated: lazily tokenised fields and term occurrences."""

    __slots__ = ("candidates", "folded", "occ", "regexes", "texts", "tokens")

    def __init__(
        self,
        texts: dict[str, str],
        candidates: set[tuple[Any, ...]],
        regexes: dict[tuple[Any, ...], Any],
        folded: dict[str, str] | None = None,
    ) -> None:
        self.texts = texts
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
        key = _lex_key(term)
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


# A hit before its offsets are resolved: only matching rules pay for offsets.
_RawHit = tuple[Term, str, _Occ]


def _evaluate(node: Node, doc: _Doc) -> tuple[bool, list[_RawHit]]:
    """Truth of `node` and the positive hits of its satisfied parts."""
    if isinstance(node, Term):
        hits = [
            (node, name, occ)
            for name in _fields(node)
            if name in doc.texts
            for occ in doc.occurrences(node, name)
        ]
        return bool(hits), hits
    if isinstance(node, Not):
        truth, _ = _evaluate(node.child, doc)
        return not truth, []
    if isinstance(node, And):
        hits = []
        for child in node.children:
            truth, child_hits = _evaluate(child, doc)
            if not truth:
                return False, []
            hits.extend(child_hits)
        return True, hits
    if isinstance(node, Or):
        hits, any_true = [], False
        for child in node.children:
            truth, child_hits = _evaluate(child, doc)
            if truth:
                any_true = True
                hits.extend(child_hits)
        return any_true, hits
    if isinstance(node, Near):
        return _evaluate_near(node, doc)
    raise TypeError(f"unexpanded alias @{node.name}" if isinstance(node, AliasRef) else node)


def _evaluate_near(node: Near, doc: _Doc) -> tuple[bool, list[_RawHit]]:
    left_terms, right_terms = terms(node.left), terms(node.right)
    names = dict.fromkeys(n for t in left_terms + right_terms for n in _fields(t))
    hits: list[_RawHit] = []
    for name in names:
        if name not in doc.texts:
            continue
        lefts = [(t, o) for t in left_terms if name in _fields(t) for o in doc.occurrences(t, name)]
        if not lefts:
            continue
        rights = [
            (t, o) for t in right_terms if name in _fields(t) for o in doc.occurrences(t, name)
        ]
        for lt, lo in lefts:
            for rt, ro in rights:
                # words strictly between the two occurrences; overlapping ones do not count
                gap = ro[0] - lo[1] - 1 if ro[0] > lo[1] else lo[0] - ro[1] - 1
                if 0 <= gap <= node.distance:
                    hits.append((lt, name, lo))
                    hits.append((rt, name, ro))
    return bool(hits), hits


def _sorted_hits(hits: list[Hit]) -> tuple[Hit, ...]:
    unique = dict.fromkeys(hits)
    return tuple(sorted(unique, key=lambda h: (_FIELD_ORDER.get(h.field, 99), h.start, h.end)))


class RuleSet:
    """Every item's rules compiled into one matcher (see the module docstring)."""

    def __init__(self, rules: list[CompiledRule], *, prefilter: Prefilter = "gate") -> None:
        import re2

        self.rules = rules
        self.prefilter = prefilter
        all_terms = {t for r in rules for t in terms(r.node)}
        self._regexes = {
            _lex_key(t): compile_regex(t.regex, t.flags) for t in all_terms if t.regex is not None
        }
        word_keys: dict[str, dict[tuple[Any, ...], None]] = {}
        regex_keys: dict[str, dict[tuple[Any, ...], None]] = {}
        for term in sorted(all_terms, key=lambda t: (t.text, t.words, t.prefix, t.flags)):
            target = regex_keys if term.regex is not None else word_keys
            for name in _fields(term):
                target.setdefault(name, {})[_lex_key(term)] = None
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
        self._token_index = {n: _TokenIndex(list(keys)) for n, keys in word_keys.items()}
        self._by_first = _TokenIndex(list(all_word_keys))  # gate words -> candidate keys
        gate = _gate_pattern(all_word_keys)
        options = re2.Options()
        options.log_errors = False
        options.max_mem = _SET_MAX_MEM
        self._gate = re2.compile(gate.encode(), options) if gate is not None else None
        # lexical key -> the rules in which a term with that key is positive
        trigger: dict[tuple[Any, ...], set[int]] = {}
        for index, rule in enumerate(rules):
            for term in positive_terms(rule.node):
                trigger.setdefault(_lex_key(term), set()).add(index)
        self._trigger = trigger
        self._always = [i for i, r in enumerate(rules) if r.always]
        # With no candidate at all, only the always-rules can hold, and without hits.
        nothing = _Doc({}, set(), self._regexes)
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

    def _candidates(
        self, texts: dict[str, str]
    ) -> tuple[set[tuple[Any, ...]], list[tuple[str, str]]]:
        """Lexical keys of the terms that may occur in some field (a superset), and the
        folded fields."""
        found: set[tuple[Any, ...]] = set()
        checked = [(n, normalize.fold_checked(texts[n])) for n in self._word_fields if n in texts]
        folded = [(n, f) for n, (f, _) in checked]
        if self.prefilter == "gate":
            if folded and self._gate is not None:
                joined = "\n".join(f for _, f in folded)
                # UTF-8 bytes skip the wrapper's str offset bookkeeping; the pattern's ASCII
                # classes mean the same on bytes (a non-ASCII byte is never a word byte).
                data = joined.encode().replace(b"_", b" ")
                if self._gate.search(data) is None:
                    pass  # the common case: no rule shares a word with this document
                elif all(ascii_only for _, (_, ascii_only) in checked):
                    # When every word is ASCII, the word found at a position is the whole
                    # token there (or a prefix of it), so the words found name every candidate.
                    for groups in self._gate.findall(data):
                        for word in groups if isinstance(groups, tuple) else (groups,):
                            if word:
                                found.update(self._by_first.keys_for(word.decode()))
                else:
                    # Elsewhere an ASCII \b may cut a word ("caf|é"): take the exact tokens.
                    for name, text in folded:
                        found.update(self._token_index[name].candidates(text))
        elif self.prefilter == "tokens":
            for name, text in folded:
                found.update(self._token_index[name].candidates(text))
        elif self.prefilter == "re2-set":
            for name, text in folded:
                fs = self._sets[name]
                found.update(fs.word_keys[i] for i in fs.words.Match(text) or ())
        else:
            for name, _ in folded:
                found.update(self._sets[name].word_keys)
        for name in self._regex_fields:
            if name in texts:
                fs = self._sets[name]
                found.update(fs.regex_keys[i] for i in fs.regexes.Match(texts[name]) or ())
        return found, folded

    def match(self, doc: Mapping[str, str]) -> list[RuleMatch]:
        """The rules `doc` satisfies, in compile order, each with its positive hits.

        `doc` maps field names (`models.FIELDS`) to plain text; missing fields are empty.
        Hit offsets index into those strings.
        """
        texts = {n: v for n, v in doc.items() if n in _FIELD_ORDER and isinstance(v, str) and v}
        try:
            candidates, folded = self._candidates(texts)
        except UnicodeEncodeError:
            # lone surrogates cannot be encoded for RE2; U+FFFD keeps every offset
            texts = {n: _SURROGATE.sub("\ufffd", v) for n, v in texts.items()}
            candidates, folded = self._candidates(texts)
        if not candidates:
            return list(self._when_nothing)
        todo = set(self._always)
        for key in candidates:
            todo.update(self._trigger.get(key, ()))
        state = _Doc(texts, candidates, self._regexes, dict(folded))
        out: list[RuleMatch] = []
        for index in sorted(todo):
            rule = self.rules[index]
            truth, hits = _evaluate(rule.node, state)
            if truth:
                resolved = [state.hit(term, name, occ) for term, name, occ in hits]
                out.append(RuleMatch(rule.item, rule.rule, _sorted_hits(resolved)))
        return out


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
