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
from json.encoder import encode_basestring_ascii as _quote  # json.dumps of a str
from typing import Union

from catalysts.errors import RuleSyntaxError
from catalysts.models import FIELDS, slot_setters
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
#
# The nodes are frozen dataclasses with hand-written `__init__`s (a compile builds thousands
# of them; why: `models.slot_setters`). Equality, hashing, `repr`, pickling and
# `dataclasses.replace` are still the dataclass ones.


@dataclass(frozen=True, slots=True, init=False)
class Term:
    """A leaf: a word, prefix or phrase (folded `words`), or a regular expression."""

    text: str  # as written: OpenAI, tokeni*, "files for IPO", /re/i
    words: tuple[str, ...] = ()  # folded tokens; several make a phrase
    prefix: bool = False  # the last word is a prefix
    regex: str | None = None  # the pattern between the slashes
    flags: str = ""
    fields: tuple[str, ...] | None = None  # None: models.DEFAULT_FIELDS
    position: int = field(default=0, compare=False)

    def __init__(
        self,
        text: str,
        words: tuple[str, ...] = (),
        prefix: bool = False,
        regex: str | None = None,
        flags: str = "",
        fields: tuple[str, ...] | None = None,
        position: int = 0,
    ) -> None:
        set_text, set_words, set_prefix, set_regex, set_flags, set_fields, set_position = (
            _TERM_SETTERS
        )
        set_text(self, text)
        set_words(self, words)
        set_prefix(self, prefix)
        set_regex(self, regex)
        set_flags(self, flags)
        set_fields(self, fields)
        set_position(self, position)


@dataclass(frozen=True, slots=True, init=False)
class AliasRef:
    """An `@alias` left unexpanded because `parse_rule` was given no aliases."""

    name: str
    fields: tuple[str, ...] | None = None
    position: int = field(default=0, compare=False)

    def __init__(self, name: str, fields: tuple[str, ...] | None = None, position: int = 0) -> None:
        set_name, set_fields, set_position = _ALIAS_REF_SETTERS
        set_name(self, name)
        set_fields(self, fields)
        set_position(self, position)


@dataclass(frozen=True, slots=True, init=False)
class Not:
    child: Node
    position: int = field(default=0, compare=False)

    def __init__(self, child: Node, position: int = 0) -> None:
        set_child, set_position = _NOT_SETTERS
        set_child(self, child)
        set_position(self, position)


@dataclass(frozen=True, slots=True, init=False)
class And:
    children: tuple[Node, ...]
    position: int = field(default=0, compare=False)

    def __init__(self, children: tuple[Node, ...], position: int = 0) -> None:
        set_children, set_position = _AND_SETTERS
        set_children(self, children)
        set_position(self, position)


@dataclass(frozen=True, slots=True, init=False)
class Or:
    children: tuple[Node, ...]
    position: int = field(default=0, compare=False)

    def __init__(self, children: tuple[Node, ...], position: int = 0) -> None:
        set_children, set_position = _OR_SETTERS
        set_children(self, children)
        set_position(self, position)


@dataclass(frozen=True, slots=True, init=False)
class Near:
    left: Node
    right: Node
    distance: int
    position: int = field(default=0, compare=False)

    def __init__(self, left: Node, right: Node, distance: int, position: int = 0) -> None:
        set_left, set_right, set_distance, set_position = _NEAR_SETTERS
        set_left(self, left)
        set_right(self, right)
        set_distance(self, distance)
        set_position(self, position)


_TERM_SETTERS = slot_setters(Term)
_ALIAS_REF_SETTERS = slot_setters(AliasRef)
_NOT_SETTERS = slot_setters(Not)
_AND_SETTERS = slot_setters(And)
_OR_SETTERS = slot_setters(Or)
_NEAR_SETTERS = slot_setters(Near)

Node = Union[Term, AliasRef, Not, And, Or, Near]  # noqa: UP007 -- runtime alias on 3.10


# --- lexer ----------------------------------------------------------------------------------

# A token: kind, value, offset, end offset, extra (regex flags; NEAR distance digits). Plain
# tuples, as a compile makes tens of thousands of them. Kinds: WORD PHRASE REGEX ALIAS FIELD
# LP RP AND OR NOT NEAR, and EOF after the last one.
_Tok = tuple[str, str, int, int, str]


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


_STOP = r"\s()\"“”„"  # the characters that end a word
_REGEX_BODY = r"(?:[^/\\]|\\.?)*"
# A lexeme and its leading whitespace, as (whitespace, field name, other lexeme): one
# `findall` builds them all in C, and the first character of an "other" lexeme tells its
# kind. Every character but a space starts some lexeme, so the lengths add up to offsets.
_LEXEME = re.compile(
    rf"""(\s*)
    (?: ([A-Za-z]+) :(?!//)  # `title:` ends at its colon; `https://...` is a word
    | ( [()]
      | ["“”„] [^"“”]* ["“”]?  # a phrase, perhaps unterminated
      | [‘’] [^‘’]* [‘’]?
      | / {_REGEX_BODY} (?: / [^{_STOP}]* )?  # a regex, perhaps unterminated, and its flags
      | [^{_STOP}]+ ) )  # a word, an operator or an @alias
    """,
    re.VERBOSE,
)
_REGEX_PARTS = re.compile(rf"/({_REGEX_BODY})(?:/([^{_STOP}]*))?")  # text, flags
_FIRST_CHAR_KIND = {
    "(": "LP",
    ")": "RP",
    "@": "ALIAS",
    "/": "REGEX",
    **dict.fromkeys('"“”„‘’', "PHRASE"),
}
_CLOSING_QUOTES = {**dict.fromkeys('"“”„', '"“”'), **dict.fromkeys("‘’", "‘’")}
_OPERATORS = frozenset({"AND", "OR", "NOT"})


def _lex(source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    append = toks.append
    end = 0
    for space, name, lexeme in _LEXEME.findall(source):
        pos = end + len(space)
        if name:
            if name not in FIELDS:
                raise _error(
                    f"unknown field {name!r} (expected one of {', '.join(FIELDS)})", source, pos
                )
            end = pos + len(name) + 1
            append(("FIELD", name, pos, end, ""))
            continue
        end = pos + len(lexeme)
        kind = _FIRST_CHAR_KIND.get(lexeme[0], "WORD")
        if kind == "WORD":
            if lexeme in _OPERATORS:
                kind = lexeme
            elif lexeme.startswith("NEAR/"):
                append(_near_token(lexeme, source, pos, end))
                continue
        elif kind == "ALIAS":
            lexeme = lexeme[1:]
        elif kind == "PHRASE":
            if len(lexeme) < 2 or lexeme[-1] not in _CLOSING_QUOTES[lexeme[0]]:
                raise _error("unterminated quote", source, pos)
            lexeme = lexeme[1:-1]
        elif kind == "REGEX":
            append(_regex_token(lexeme, source, pos, end))
            continue
        append((kind, lexeme, pos, end, ""))
    # Only trailing spaces are left, unless the pattern above skipped a character.
    if end != len(source) and not source[end:].isspace():
        raise _error("unexpected character", source, end)
    return toks


def _near_token(word: str, source: str, pos: int, end: int) -> _Tok:
    digits = word[5:]
    if not (digits.isascii() and digits.isdigit() and 1 <= int(digits) <= MAX_NEAR):
        raise _error(f"bad NEAR distance (expected NEAR/1 to NEAR/{MAX_NEAR})", source, pos + 5)
    return ("NEAR", word, pos, end, digits)


def _regex_token(lexeme: str, source: str, pos: int, end: int) -> _Tok:
    parts = _REGEX_PARTS.fullmatch(lexeme)
    assert parts is not None  # the same pattern as in `_LEXEME`, which matched it
    text, flags = parts.groups()
    if flags is None:
        raise _error("unterminated regular expression (expected a closing /)", source, pos)
    bad = next((k for k, c in enumerate(flags) if c not in _REGEX_FLAGS), None)
    if bad is not None:
        at = pos + len(text) + 2 + bad  # after both slashes
        raise _error("unknown regular expression flag (expected i)", source, at)
    return ("REGEX", text, pos, end, flags)


# --- parser ---------------------------------------------------------------------------------

_TERM_START = frozenset({"WORD", "PHRASE", "REGEX", "ALIAS", "FIELD", "LP"})
_OPERAND_START = _TERM_START | {"NOT"}
_LEAF = frozenset({"WORD", "PHRASE", "REGEX"})  # one token makes the whole term


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
        self.toks.append(("EOF", "", len(source), len(source), ""))  # so peeking never fails
        self.i = 0
        self.depth = 0

    def error(self, what: str, pos: int) -> RuleSyntaxError:
        return _error(what, self.source, pos)

    def parse(self) -> Node:
        if len(self.toks) == 1:
            raise RuleSyntaxError("empty rule (expected at least one term)", self.source, 0)
        node = self.parse_or()
        kind, _, pos, _, _ = self.toks[self.i]
        if kind != "EOF":  # parse_or stops only at a ')' nobody opened
            raise self.error("unbalanced parenthesis (no '(' to close)", pos)
        return node

    def parse_or(self) -> Node:
        """The `or` and `and` rules in one loop (an OR closes a group of ANDed operands)."""
        toks = self.toks
        groups: list[Node] = []
        operands: list[Node] = []
        while True:
            node = self.parse_unary()
            if toks[self.i][0] == "NEAR":
                node = self.parse_near(node)
            operands.append(node)
            kind, _, pos, _, _ = toks[self.i]
            if kind == "AND" or kind == "OR":
                self.i += 1
                if toks[self.i][0] not in _OPERAND_START:
                    raise self.error(f"{kind} needs a term after it", pos)
                if kind == "OR":
                    groups.append(_and(operands))
                    operands = []
            elif kind not in _OPERAND_START:
                break
        if not groups:
            return _and(operands)
        groups.append(_and(operands))
        return Or(tuple(groups), groups[0].position)

    def parse_near(self, left: Node) -> Node:
        toks = self.toks
        while (tok := toks[self.i])[0] == "NEAR":
            self.i += 1
            if toks[self.i][0] not in _OPERAND_START:
                raise self.error("NEAR needs a term after it", tok[2])
            right = self.parse_unary()
            self.check_near_operand(left)
            self.check_near_operand(right)
            left = Near(left, right, int(tok[4]), left.position)
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
        """A NOT, or a primary: a parenthesised OR, a field, an alias or a leaf."""
        toks = self.toks
        tok = toks[self.i]
        kind, value, pos, end, _ = tok
        if kind == "WORD":  # the commonest token
            self.i += 1
            return self.word(value, pos)
        if kind in _LEAF:
            self.i += 1
            return self.leaf(tok, None)
        if kind == "ALIAS":
            self.i += 1
            return self.alias(value, pos)
        if kind == "LP":
            self.i += 1
            self.enter(pos)
            nxt = toks[self.i]
            if nxt[0] == "RP":
                raise self.error("empty parentheses (expected a term inside)", nxt[2])
            node = self.parse_or()
            if toks[self.i][0] != "RP":
                raise self.error("unbalanced parenthesis (expected a closing ')')", pos)
            self.i += 1
            self.depth -= 1
            return node
        if kind == "NOT":
            self.i += 1
            if toks[self.i][0] not in _OPERAND_START:
                raise self.error("NOT needs a term after it", pos)
            self.enter(pos)
            child = self.parse_unary()
            self.depth -= 1
            return Not(child, pos)
        if kind == "FIELD":
            self.i += 1
            nxt = toks[self.i]
            if nxt[0] not in _TERM_START or nxt[2] != end:
                raise self.error(f"expected a term right after {value}:", pos)
            if nxt[0] in _LEAF:  # built with its field: nothing to rescope
                self.i += 1
                return self.leaf(nxt, (value,))
            return _scope(self.parse_unary(), value, self.source)  # NOT cannot come next
        if kind == "EOF":
            raise self.error("expected a term", len(self.source))
        if kind == "RP":
            raise self.error("unbalanced parenthesis (no '(' to close)", pos)
        raise self.error(f"{kind} needs a term before it", pos)  # AND OR NEAR

    def leaf(self, tok: _Tok, fields: tuple[str, ...] | None) -> Term:
        kind, value, pos, end, flags = tok
        if kind == "WORD":
            return self.word(value, pos, fields)
        if kind == "PHRASE":
            words = normalize.term_words(value)
            if not words:
                raise self.error("empty phrase (expected words inside the quotes)", pos)
            return Term(f'"{value}"', words, False, None, "", fields, pos)
        if not value:
            raise self.error("empty regular expression", pos)
        try:
            compile_regex(value, flags)
        except ValueError as exc:
            raise self.error(f"invalid regular expression ({exc})", pos) from None
        return Term(self.source[pos:end], (), False, value, flags, fields, pos)

    def word(self, text: str, pos: int, fields: tuple[str, ...] | None = None) -> Term:
        star = text.find("*")
        if star >= 0:
            if star != len(text) - 1:
                raise self.error("'*' is allowed only at the end of a word", pos + star)
            base = text[:-1]
            if not base or not normalize.ends_with_word(base):
                raise self.error("a prefix needs letters or digits before '*'", pos + star)
            return Term(text, normalize.term_words(base), True, None, "", fields, pos)
        words = normalize.term_words(text)
        if not words:
            raise self.error("expected letters or digits in a term", pos)
        return Term(text, words, False, None, "", fields, pos)

    def alias(self, name: str, pos: int) -> Node:
        if not name:
            raise self.error("expected an alias name after '@'", pos)
        if self.aliases is None:
            return AliasRef(name, None, pos)
        cached = self.expanded.get(name)
        if isinstance(cached, Or):  # a fresh node, so errors point into this rule
            return Or(cached.children, pos)
        if cached is not None:
            return replace(cached, position=pos)
        if name not in self.aliases:
            known = ", ".join(sorted(self.aliases)[:8]) or "none defined"
            raise self.error(f"unknown alias @{name} (known: {known})", pos)
        terms: list[Node] = []
        for element in self.aliases[name]:
            text = str(element).strip()
            if text.endswith("*"):
                term = self.word(text, pos)
            else:
                words = normalize.term_words(text)
                if not words:
                    raise self.error(f"alias @{name} has an element with no words", pos)
                shown = text if len(words) == 1 else f'"{text}"'
                term = Term(shown, words, False, None, "", None, pos)
            terms.append(term)
        if not terms:
            raise self.error(f"alias @{name} is empty", pos)
        node = terms[0] if len(terms) == 1 else Or(tuple(terms), pos)
        self.expanded[name] = node
        return node


def _and(operands: list[Node]) -> Node:
    return operands[0] if len(operands) == 1 else And(tuple(operands), operands[0].position)


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


def can_match_empty(node: Node) -> bool:
    """True when the rule can hold with no positive term present (e.g. `NOT spam`).

    Such a rule matches documents that share no word with it, so the engine evaluates it
    for every document; validation may warn about it. Over-approximates: a True here is
    "possibly", a False is certain.
    """
    # With every positive term absent a leaf is false, while the terms under a NOT are free,
    # so a NOT can always be made true (its operand false).
    if isinstance(node, Not):
        return True
    if isinstance(node, And):
        return all(map(can_match_empty, node.children))
    if isinstance(node, Or):
        return any(map(can_match_empty, node.children))
    if isinstance(node, Near):
        return can_match_empty(node.left) and can_match_empty(node.right)
    return False


def canonical(node: Node) -> str:
    """A stable text form of the (alias-expanded) AST: whitespace and layout do not show."""
    return _canonical(node, {})


def _canonical(node: Node, seen: dict[int, str]) -> str:
    # An alias is expanded to one subtree wherever it is used: its text is built once. The
    # quoting is json.dumps's, without its per-call setup (a rule hash must not change).
    done = seen.get(id(node))
    if done is not None:
        return done
    if isinstance(node, Term):
        fields = ",".join(node.fields) if node.fields is not None else "*"
        if node.regex is not None:
            text = f"re({_quote(node.regex)},{node.flags},{fields})"
        else:
            words = ", ".join(map(_quote, node.words))
            text = f"t({_quote(node.text)},[{words}],{node.prefix:d},{fields})"
    elif isinstance(node, AliasRef):
        text = f"alias({_quote(node.name)})"
    elif isinstance(node, Not):
        text = f"not({_canonical(node.child, seen)})"
    elif isinstance(node, (And, Or)):
        op = "and" if isinstance(node, And) else "or"
        text = f"{op}({','.join([_canonical(c, seen) for c in node.children])})"
    else:
        text = f"near{node.distance}({_canonical(node.left, seen)},{_canonical(node.right, seen)})"
    seen[id(node)] = text
    return text


def rule_hash(source: str, aliases: Mapping[str, Sequence[str]]) -> str:
    """Hex digest of the rule with its aliases expanded: alias edits and `ENGINE_VERSION`
    change it, spacing does not."""
    return node_hash(parse_rule(source, aliases))


def node_hash(node: Node) -> str:
    """`rule_hash` of an already parsed (alias-expanded) rule."""
    text = f"catalysts-rules-{ENGINE_VERSION}\n" + canonical(node)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
