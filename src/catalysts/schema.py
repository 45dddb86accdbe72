"""The watchlist's JSON Schema (draft 2020-12), for editors and `catalysts schema`.

Editors that speak the yaml-language-server modeline complete and check keys as the user
types. The schema mirrors `watchlist.py` (same keys, id and duration patterns, enums) but
the loader stays the authority: rules are only parsed there, and sources are only
resolved there.
"""

from __future__ import annotations

import json
from typing import Any

from catalysts.timeutil import DATE_PATTERN, DURATION_PATTERN
from catalysts.watchlist import (
    ALIAS_PATTERN,
    FEED_KEYS,
    ID_PATTERN,
    ITEM_KEYS,
    KINDS,
    OVERRIDE_KEYS,
    SETTINGS_KEYS,
    STATUSES,
    SUPPORTED_VERSION,
    THESIS_KEYS,
    TOP_KEYS,
)

SCHEMA_FILENAME = "watchlist.schema.json"
# The modeline the shipped and `init`-written watchlists carry: the schema sits beside them.
MODELINE = f"# yaml-language-server: $schema=./{SCHEMA_FILENAME}"


def _ref(name: str, description: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}", "description": description}


def _object(
    description: str, properties: dict[str, Any], keys: tuple[str, ...], required: list[str]
) -> dict[str, Any]:
    # The loader's key tuples are the truth; this catches a key added there but not here.
    assert tuple(properties) == keys, (tuple(properties), keys)
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }


def build_schema() -> dict[str, Any]:
    """The watchlist JSON Schema as a dict (draft 2020-12)."""
    rule = {
        "type": "string",
        "minLength": 1,
        "description": (
            'A rule: words, "phrases", prefix*, AND/OR/NOT, parentheses, @alias, field:term, '
            "a NEAR/5 b, /regex/i. Quote the whole rule in single quotes in YAML."
        ),
    }
    defs: dict[str, Any] = {
        "id": {
            "type": "string",
            "pattern": ID_PATTERN,
            "description": "A slug: lowercase letters, digits, '-' and '_', at most 64.",
        },
        "duration": {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number and units w, d, h, m, s, like 30d, 12h, 1d12h.",
        },
        "date": {
            "type": "string",
            "pattern": DATE_PATTERN,
            "description": "A date, YYYY-MM-DD.",
        },
        "positive": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "A positive number.",
        },
        "text": {"type": "string", "minLength": 1, "description": "Non-empty text."},
        "rule": rule,
        "settings": _object(
            "Optional settings; every key has a default.",
            {
                "window": _ref("duration", "How far back evidence counts toward status (30d)."),
                "half_life": _ref("duration", "Recency decay of evidence weight (7d)."),
                "user_agent": _ref(
                    "text",
                    "HTTP User-Agent; include a contact (SEC EDGAR requires one). "
                    "Env CATALYSTS_USER_AGENT overrides it.",
                ),
                "max_age": _ref(
                    "duration", "`status` fetches first when the last fetch is older (12h)."
                ),
                "threshold": _ref(
                    "positive", "Default score at which an item is 'building' (2.0)."
                ),
                "stale_after": _ref(
                    "duration", "No successful fetch of an item's feeds for this long: stale (2d)."
                ),
            },
            SETTINGS_KEYS,
            [],
        ),
        "feed": _object(
            "A feed to read: RSS, Atom or JSON Feed.",
            {
                "id": _ref("id", "Unique feed id, used in `sources` and `catalysts feeds`."),
                "url": {
                    "type": "string",
                    "minLength": 1,
                    "pattern": r"^(https?://[^\s/]+|file://|(?![A-Za-z][A-Za-z0-9+.-]+:))",
                    "description": (
                        "http(s) URL, file:// URL or a file path (relative to the watchlist)."
                    ),
                },
                "tags": {
                    "type": ["array", "null"],
                    "items": _ref("id", "A tag, usable in an item's `sources`."),
                    "description": "Tags that items can name in `sources` to pick several feeds.",
                },
                "weight": _ref("positive", "Credibility multiplier of its evidence (1.0)."),
                "title": _ref("text", "Display name (default: the feed's own title)."),
            },
            FEED_KEYS,
            ["id", "url"],
        ),
        "override": _object(
            "A manual verdict, always shown with its note.",
            {
                "status": {
                    "enum": list(STATUSES),
                    "description": "The status to show instead of the computed one.",
                },
                "note": _ref("text", "Why: shown next to the status."),
                "since": _ref("date", "When the verdict began."),
            },
            OVERRIDE_KEYS,
            ["status", "note"],
        ),
        "item": _object(
            "A catalyst or risk to watch for.",
            {
                "id": _ref("id", "Unique item id across the whole watchlist."),
                "kind": {
                    "enum": list(KINDS),
                    "description": "catalyst (should happen) or risk (would break the thesis).",
                },
                "title": _ref("text", "Short title shown in tables."),
                "why": _ref("text", "Why it matters to the thesis."),
                "by": _ref("date", "Optional deadline: passed without a trigger means expired."),
                "signal": {**rule, "description": "Rule for news that builds toward it."},
                "confirm": {**rule, "description": "Rule for news that it happened (triggered)."},
                "sources": {
                    "type": ["array", "null"],
                    "items": _ref("id", "A feed id or a feed tag."),
                    "description": "Feed ids or tags whose entries count; default: every feed.",
                },
                "threshold": _ref("positive", "Score at which it is 'building' (settings)."),
                "override": _ref("override", "Optional manual verdict."),
            },
            ITEM_KEYS,
            ["id", "kind", "title", "signal"],
        ),
        "thesis": _object(
            "An investment thesis and the items that would make or break it.",
            {
                "id": _ref("id", "Unique thesis id."),
                "title": _ref("text", "The thesis in one line."),
                "source": _ref("text", "Where the thesis comes from (article, author, year)."),
                "items": {
                    "type": "array",
                    "items": {"$ref": "#/$defs/item"},
                    "description": "The catalysts and risks of this thesis.",
                },
            },
            THESIS_KEYS,
            ["id", "title", "items"],
        ),
    }
    root = _object(
        "A catalysts watchlist: theses, their catalysts and risks, and the feeds to read.",
        {
            "version": {
                "const": SUPPORTED_VERSION,
                "description": "Watchlist format version; must be 1.",
            },
            "settings": {
                "anyOf": [{"$ref": "#/$defs/settings"}, {"type": "null"}],
                "description": "Optional settings; every key has a default.",
            },
            "aliases": {
                "type": ["object", "null"],
                "description": "Reusable term lists, used in rules as @name.",
                "propertyNames": {"pattern": ALIAS_PATTERN},
                "additionalProperties": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "minLength": 1},
                    "description": "Terms: the alias matches any of them.",
                },
            },
            "feeds": {
                "type": ["array", "null"],
                "items": {"$ref": "#/$defs/feed"},
                "description": "The feeds to read.",
            },
            "theses": {
                "type": "array",
                "items": {"$ref": "#/$defs/thesis"},
                "description": "The theses to track.",
            },
        },
        TOP_KEYS,
        ["version", "theses"],
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "catalysts watchlist",
        **root,
        "$defs": defs,
    }


def schema_json() -> str:
    """The schema as the text `catalysts schema` prints and `init` writes (ends in a newline)."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"
