"""The rule language: parse rules, compile many into one matcher, match with evidence.

`from catalysts.rules import parse_rule, RuleSet, rule_hash, document` -- pure, no I/O.
See `parse.py` for the language, `normalize.py` for what a word is, `engine.py` for
matching.
"""

from __future__ import annotations

from catalysts.rules.engine import CompiledRule, RuleSet, document
from catalysts.rules.normalize import fold, tokenize
from catalysts.rules.parse import (
    ENGINE_VERSION,
    AliasRef,
    And,
    Near,
    Node,
    Not,
    Or,
    Term,
    can_match_empty,
    canonical,
    parse_rule,
    rule_hash,
)

__all__ = [
    "ENGINE_VERSION",
    "AliasRef",
    "And",
    "CompiledRule",
    "Near",
    "Node",
    "Not",
    "Or",
    "RuleSet",
    "Term",
    "can_match_empty",
    "canonical",
    "document",
    "fold",
    "parse_rule",
    "rule_hash",
    "tokenize",
]
