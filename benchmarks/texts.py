"""Benchmark inputs: English sentences of about 16 and about 128 MiniLM tokens.

A node answers a text it has seen from its inference cache, without a forward pass, so every input a benchmark sends
is made unique with `numbered` (a few more tokens): no scenario measures the cache."""

SHORT = [
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "Elasticsearch stores documents and answers search requests in milliseconds today.",
    "A small team in Berlin released the new version of their app last week.",
    "Heavy rain is expected across the northern coast for most of the weekend.",
]

_PARAGRAPH = (
    "The committee met on Tuesday to review the annual budget, and after a long discussion about the cost of the "
    "new bridge, the rising price of energy and the need for more teachers in the northern districts, the members "
    "agreed to postpone the final vote until the engineers had delivered their report on the river crossing. "
    "Several residents spoke during the public session, asking the council to protect the old market hall, to "
    "extend the bus lines to the new housing estates and to publish the full accounts of the regional water "
    "company before the end of the year."
)
LONG = [_PARAGRAPH, _PARAGRAPH.replace("Tuesday", "Friday"), _PARAGRAPH.replace("bridge", "tunnel")]

SETS = {"short": SHORT, "long": LONG}


def numbered(text: str, number: str) -> str:
    """`text` made unique: `number` must not repeat within a node's life (`benchmarks.load` builds the same form)."""
    return f"{text} (#{number})"
