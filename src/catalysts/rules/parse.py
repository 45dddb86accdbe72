"""The rule language: lexer, parser and AST (DESIGN section 3).

Grammar, loosest binding first (so NOT > NEAR > AND > OR)::

    rule    := or
    or      := and ("OR" and)*
    and     := near (["AND"] near)*          # adjacency means AND
    near    := unary ("NEAR/" N unary)*
    unary   := "NOT" unary | primary
    primary := "(" or ")" | FIELD ":" primary | "@" ALIAS | WORD | WORD* | "PHRASE" | /REGEX/i

Keywords are uppercase only: lowercase `and`, `or`, `not`, `near` are plain words, and so
is `NEAR` without a `/N` distance (so the NEAR protocol can be named). `a NEAR/5 b` holds
when an occurrence of `a` and one of `b` lie in the same field with at most 5 other words
between them; its operands are words, prefixes, phrases, aliases or parenthesised ORs of
those. Every error is a `RuleSyntaxError` whose position is the 0-based offset of the
offending character.

Terms: a word matches whole tokens (see `normalize` for what a token is, and why `S-1` is
the phrase `s 1`); `word*` is a prefix of one token; `"a b"` (straight or curly quotes)
is consecutive tokens; `@alias` is an OR of its elements, each a word, or a phrase when
it has several words; `/re/` is an RE2 regex searched in the original (unfolded) field
text, case-sensitive unless `/re/i`. A term's `text` is how evidence names it: as
written, without its `field:` (the hit carries the field), phrases in straight quotes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Union

from catalysts.errors import RuleSyntaxError
from catalysts.models import FIELDS
from catalysts.rules import normalize

MAX_DEPTH = 64  # nesting of parentheses and NOTs; deeper is surely not a real rule
MAX_NEAR = 1000
# The version of the matching semantics (parser, normalisation, engine), part of every
# `rule_hash`: bump it when any of them changes what a rule matches, so that the stored
# matches of every rule are recomputed. (Speed-ups that match the same, like those
# cross-checked against the reference evaluator, keep it.)
ENGINE_VERSION = 1

_REGEX_FLAGS = frozenset("i")


# --- AST ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A leaf: a word, prefix or phrase (folded `words`), or a regular expression."""

    text: str  # as written: OpenAI, tokeni*, "files for IPO", /re/i
    words: tuple[str, ...] = ()  # folded tokens; several make a phrase
    prefix: bool = False  # the last word is a prefix
    regex: str | None = None  # the pattern between the slashes
    flags: str = ""
    fields: tuple[str, ...] | None = None  # None: models.DEFAULT_FIELDS
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class AliasRef:
    """An `@alias` left unexpanded because `parse_rule` was given no aliases."""

    name: str
    fields: tuple[str, ...] | None = None
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Near:
    left: Node
    right: Node
    distance: int
    position: int = field(default=0, compare=False)


Node = Union[Term, AliasRef, Not, And, Or, Near]  # noqa: UP007 -- runtime alias on 3.10


# --- lexer ----------------------------------------------------------------------------------


class _Tok(NamedTuple):  # a tuple: a compile makes tens of thousands of them
    kind: str  # WORD PHRASE REGEX ALIAS FIELD LP RP AND OR NOT NEAR
    value: str
    pos: int
    end: int
    extra: str = ""  # regex flags; NEAR distance digits


def _excerpt(source: str, pos: int) -> str:
    if pos >= len(source):
        return "end of rule"
    rest = source[pos:]
    cut = len(rest)
    for i, c in enumerate(rest):
        if i > 0 and c.isspace():
            cut = i
            break
    return '"' + rest[: min(cut, 24)] + '"'


def _error(what: str, source: str, pos: int) -> RuleSyntaxError:
    return RuleSyntaxError(f"{what} at {_excerpt(source, pos)}", source, pos)


_LEXEME = re.compile(
    r"""(?P<ws>\s*)  # leading whitespace joins the lexeme: half the Python iterations
    (?: (?P<lp>\() | (?P<rp>\))
    | (?P<dq>["“”„]) (?P<dq_text>[^"“”]*) (?P<dq_end>["“”])?
    | (?P<sq>[‘’]) (?P<sq_text>[^‘’]*) (?P<sq_end>[‘’])?
    | /(?P<re_text>(?:[^/\\]|\\.?)*) (?P<re_end>/ (?P<re_flags>[^\s()"“”„]*) )?
    | (?P<field>[A-Za-z]+) :(?!//)  # `title:` ends at its colon; `https://...` is a word
    | (?P<word>[^\s()"“”„]+) )
    """,
    re.VERBOSE,
)


def _lex(source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    append = toks.append
    i = 0
    for m in _LEXEME.finditer(source):  # one C scan: every character starts some lexeme
        if m.start() != i:  # cannot happen; keep it an error
            raise _error("unexpected character", source, i)
        kind = m.lastgroup
        i, j = m.end("ws"), m.end()
        if kind == "word":
            append(_word_token(m.group("word"), source, i, j))
        elif kind == "field":
            name = m.group("field")
            if name not in FIELDS:
                raise _error(
                    f"unknown field {name!r} (expected one of {', '.join(FIELDS)})", source, i
                )
            append(_Tok("FIELD", name, i, j))
        elif kind == "lp":
            append(_Tok("LP", "(", i, j))
        elif kind == "rp":
            append(_Tok("RP", ")", i, j))
        elif kind in ("dq_text", "dq_end", "sq_text", "sq_end"):
            quote = kind[:2]
            if m.group(f"{quote}_end") is None:
                raise _error("unterminated quote", source, i)
            append(_Tok("PHRASE", m.group(f"{quote}_text"), i, j))
        else:  # a regex
            if m.group("re_end") is None:
                raise _error("unterminated regular expression (expected a closing /)", source, i)
            flags = m.group("re_flags")
            bad = next((k for k, c in enumerate(flags) if c not in _REGEX_FLAGS), None)
            if bad is not None:
                at = m.start("re_flags") + bad
                raise _error("unknown regular expression flag (expected i)", source, at)
            append(_Tok("REGEX", m.group("re_text"), i, j, flags))
        i = j
    if i != len(source) and not source[i:].isspace():
        raise _error("unexpected character", source, i)
    return toks


def _word_token(word: str, source: str, i: int, j: int) -> _Tok:
    if word in ("AND", "OR", "NOT"):
        return _Tok(word, word, i, j)
    if word.startswith("NEAR/"):
        digits = word[5:]
        if not (digits.isascii() and digits.isdigit() and 1 <= int(digits) <= MAX_NEAR):
            raise _error(f"bad NEAR distance (expected NEAR/1 to NEAR/{MAX_NEAR})", source, i + 5)
        return _Tok("NEAR", word, i, j, digits)
    if word.startswith("@"):
        return _Tok("ALIAS", word[1:], i, j)
    colon = word.find(":")
    name = word[:colon]
    # `https://...` is a word, not a field named https.
    if colon > 0 and name.isascii() and name.isalpha() and word[colon + 1 : colon + 3] != "//":
        if name not in FIELDS:
            raise _error(f"unknown field {name!r} (expected one of {', '.join(FIELDS)})", source, i)
        return _Tok("FIELD", name, i, i + colon + 1)
    return _Tok("WORD", word, i, j)


# --- parser ---------------------------------------------------------------------------------

_TERM_START = frozenset({"WORD", "PHRASE", "REGEX", "ALIAS", "FIELD", "LP"})
_OPERAND_START = _TERM_START | {"NOT"}


class _Parser:
    def __init__(
        self,
        source: str,
        aliases: Mapping[str, Sequence[str]] | None,
        expanded: dict[str, Node] | None = None,
    ) -> None:
        self.source = source
        self.aliases = aliases
        # alias name -> expansion, shared by the rules of one compile
        self.expanded = expanded if expanded is not None else {}
        self.toks = _lex(source)
        self.toks.append(_Tok("EOF", "", len(source), len(source)))  # so peek never fails
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, what: str, pos: int) -> RuleSyntaxError:
        return _error(what, self.source, pos)

    def parse(self) -> Node:
        if len(self.toks) == 1:
            raise RuleSyntaxError("empty rule (expected at least one term)", self.source, 0)
        node = self.parse_or()
        tok = self.peek()
        if tok.kind != "EOF":  # parse_or stops only at a ')' nobody opened
            raise self.error("unbalanced parenthesis (no '(' to close)", tok.pos)
        return node

    def need_operand(self, op: _Tok) -> None:
        nxt = self.peek()
        if nxt.kind not in _OPERAND_START:
            raise self.error(f"{op.kind} needs a term after it", op.pos)

    def parse_or(self) -> Node:
        children = [self.parse_and()]
        while self.toks[self.i].kind == "OR":
            self.need_operand(self.take())
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else Or(tuple(children), children[0].position)

    def parse_and(self) -> Node:
        children = [self.parse_near()]
        while True:
            tok = self.toks[self.i]
            if tok.kind == "AND":
                self.need_operand(self.take())
            elif tok.kind not in _OPERAND_START:
                break
            children.append(self.parse_near())
        return children[0] if len(children) == 1 else And(tuple(children), children[0].position)

    def parse_near(self) -> Node:
        left = self.parse_unary()
        while (tok := self.toks[self.i]).kind == "NEAR":
            self.take()
            self.need_operand(tok)
            right = self.parse_unary()
            self.check_near_operand(left)
            self.check_near_operand(right)
            left = Near(left, right, int(tok.extra), left.position)
        return left

    def check_near_operand(self, node: Node) -> None:
        if isinstance(node, Term) and node.regex is not None:
            raise self.error("NEAR joins words, prefixes or phrases, not a regex", node.position)
        if isinstance(node, Or):
            for child in node.children:
                self.check_near_operand(child)
        elif not isinstance(node, (Term, AliasRef)):
            raise self.error(
                "NEAR joins words, prefixes, phrases or an OR of them (use AND here)",
                node.position,
            )

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"rule nested too deeply (more than {MAX_DEPTH} levels)", pos)

    def parse_unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "NOT":
            self.take()
            self.need_operand(tok)
            self.enter(tok.pos)
            child = self.parse_unary()
            self.depth -= 1
            return Not(child, tok.pos)
        return self.parse_primary()

    def parse_primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "EOF":
            raise self.error("expected a term", len(self.source))
        if tok.kind in ("AND", "OR", "NEAR"):
            raise self.error(f"{tok.kind} needs a term before it", tok.pos)
        if tok.kind == "RP":
            raise self.error("unbalanced parenthesis (no '(' to close)", tok.pos)
        self.take()
        if tok.kind == "LP":
            self.enter(tok.pos)
            nxt = self.peek()
            if nxt.kind == "RP":
                raise self.error("empty parentheses (expected a term inside)", nxt.pos)
            node = self.parse_or()
            close = self.peek()
            if close.kind != "RP":
                raise self.error("unbalanced parenthesis (expected a closing ')')", tok.pos)
            self.take()
            self.depth -= 1
            return node
        if tok.kind == "FIELD":
            nxt = self.peek()
            if nxt.kind not in _TERM_START or nxt.pos != tok.end:
                raise self.error(f"expected a term right after {tok.value}:", tok.pos)
            return _scope(self.parse_primary(), tok.value, self.source)
        if tok.kind == "ALIAS":
            return self.alias(tok)
        if tok.kind == "PHRASE":
            words = normalize.term_words(tok.value)
            if not words:
                raise self.error("empty phrase (expected words inside the quotes)", tok.pos)
            return Term(f'"{tok.value}"', words, position=tok.pos)
        if tok.kind == "REGEX":
            return self.regex(tok)
        return self.word(tok.value, tok.pos)

    def word(self, text: str, pos: int) -> Term:
        star = text.find("*")
        if star >= 0:
            if star != len(text) - 1:
                raise self.error("'*' is allowed only at the end of a word", pos + star)
            base = text[:-1]
            if not base or not normalize.ends_with_word(base):
                raise self.error("a prefix needs letters or digits before '*'", pos + star)
            return Term(text, normalize.term_words(base), prefix=True, position=pos)
        words = normalize.term_words(text)
        if not words:
            raise self.error("expected letters or digits in a term", pos)
        return Term(text, words, position=pos)

    def regex(self, tok: _Tok) -> Term:
        if not tok.value:
            raise self.error("empty regular expression", tok.pos)
        try:
            compile_regex(tok.value, tok.extra)
        except ValueError as exc:
            raise self.error(f"invalid regular expression ({exc})", tok.pos) from None
        text = self.source[tok.pos : tok.end]
        return Term(text, regex=tok.value, flags=tok.extra, position=tok.pos)

    def alias(self, tok: _Tok) -> Node:
        name = tok.value
        if not name:
            raise self.error("expected an alias name after '@'", tok.pos)
        if self.aliases is None:
            return AliasRef(name, position=tok.pos)
        cached = self.expanded.get(name)
        if isinstance(cached, Or):  # a fresh node, so errors point into this rule
            return Or(cached.children, tok.pos)
        if cached is not None:
            return replace(cached, position=tok.pos)
        if name not in self.aliases:
            known = ", ".join(sorted(self.aliases)[:8]) or "none defined"
            raise self.error(f"unknown alias @{name} (known: {known})", tok.pos)
        terms: list[Node] = []
        for element in self.aliases[name]:
            text = str(element).strip()
            if text.endswith("*"):
                term = self.word(text, tok.pos)
            else:
                words = normalize.term_words(text)
                if not words:
                    raise self.error(f"alias @{name} has an element with no words", tok.pos)
                shown = text if len(words) == 1 else f'"{text}"'
                term = Term(shown, words, position=tok.pos)
            terms.append(term)
        if not terms:
            raise self.error(f"alias @{name} is empty", tok.pos)
        node = terms[0] if len(terms) == 1 else Or(tuple(terms), tok.pos)
        self.expanded[name] = node
        return node


def compile_regex(pattern: str, flags: str) -> object:
    """Compile a rule regex with RE2 (linear time); ValueError with RE2's reason if invalid."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = "i" not in flags
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None


def _scope(node: Node, name: str, source: str) -> Node:
    """Restrict every term under `node` to the field `name`."""
    if isinstance(node, (Term, AliasRef)):
        if node.fields is not None and node.fields != (name,):
            raise _error("a term can have only one field", source, node.position)
        return replace(node, fields=(name,))
    if isinstance(node, Not):
        return replace(node, child=_scope(node.child, name, source))
    if isinstance(node, (And, Or)):
        return replace(node, children=tuple(_scope(c, name, source) for c in node.children))
    left, right = _scope(node.left, name, source), _scope(node.right, name, source)
    return replace(node, left=left, right=right)


def parse_rule(
    source: str,
    aliases: Mapping[str, Sequence[str]] | None = None,
    *,
    _expanded: dict[str, Node] | None = None,
) -> Node:
    """Parse a rule into its AST; `@alias` is expanded (and checked) when `aliases` is given.

    Raises `RuleSyntaxError(message, source, position)` pointing at the offending character.
    """
    if not isinstance(source, str):
        raise RuleSyntaxError("a rule must be text", str(source), 0)
    return _Parser(source, aliases, _expanded).parse()


# --- analysis -------------------------------------------------------------------------------


def terms(node: Node) -> list[Term]:
    """Every term leaf, in rule order."""
    if isinstance(node, Term):
        return [node]
    if isinstance(node, AliasRef):
        return []
    if isinstance(node, Not):
        return terms(node.child)
    if isinstance(node, (And, Or)):
        return [t for c in node.children for t in terms(c)]
    return terms(node.left) + terms(node.right)


def positive_terms(node: Node) -> list[Term]:
    """Terms with no NOT above them: the only ones that can be evidence."""
    if isinstance(node, Term):
        return [node]
    if isinstance(node, (AliasRef, Not)):
        return []
    if isinstance(node, (And, Or)):
        return [t for c in node.children for t in positive_terms(c)]
    return positive_terms(node.left) + positive_terms(node.right)


def _can(node: Node, positive: bool) -> tuple[bool, bool]:
    """(can be true, can be false) when every positive term is absent, others free."""
    if isinstance(node, (Term, AliasRef)):
        return (not positive, True)
    if isinstance(node, Not):
        can_true, can_false = _can(node.child, False)
        return (can_false, can_true)
    if isinstance(node, And):
        results = [_can(c, positive) for c in node.children]
        return (all(t for t, _ in results), any(f for _, f in results))
    if isinstance(node, Or):
        results = [_can(c, positive) for c in node.children]
        return (any(t for t, _ in results), all(f for _, f in results))
    return (_can(node.left, positive)[0] and _can(node.right, positive)[0], True)


def can_match_empty(node: Node) -> bool:
    """True when the rule can hold with no positive term present (e.g. `NOT spam`).

    Such a rule matches documents that share no word with it, so the engine evaluates it
    for every document; validation may warn about it. Over-approximates: a True here is
    "possibly", a False is certain.
    """
    return _can(node, True)[0]


def canonical(node: Node) -> str:
    """A stable text form of the (alias-expanded) AST: whitespace and layout do not show."""
    import json

    if isinstance(node, Term):
        fields = ",".join(node.fields) if node.fields is not None else "*"
        if node.regex is not None:
            return f"re({json.dumps(node.regex)},{node.flags},{fields})"
        return f"t({json.dumps(node.text)},{json.dumps(node.words)},{node.prefix:d},{fields})"
    if isinstance(node, AliasRef):
        return f"alias({json.dumps(node.name)})"
    if isinstance(node, Not):
        return f"not({canonical(node.child)})"
    if isinstance(node, (And, Or)):
        op = "and" if isinstance(node, And) else "or"
        return f"{op}({','.join(canonical(c) for c in node.children)})"
    return f"near{node.distance}({canonical(node.left)},{canonical(node.right)})"


def rule_hash(source: str, aliases: Mapping[str, Sequence[str]]) -> str:
    """Hex digest of the rule with its aliases expanded: alias edits and `ENGINE_VERSION`
    change it, spacing does not."""
    text = f"catalysts-rules-{ENGINE_VERSION}\n" + canonical(parse_rule(source, aliases))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
