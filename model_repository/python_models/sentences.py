"""Split a financial document into sentences: (start, end) character offsets into the text.

Two passes. Layout first: blank lines, bullet or numbered items, and short lines without
closing punctuation (headings, transcript speaker turns such as "Operator" or
"Jane Doe -- Chief Financial Officer:") end a block; a single newline inside a paragraph is a
wrapped line, not a boundary. Then nupunkt (Punkt trained on legal and financial text, its
parameters shipped in the wheel: no download at run time) splits each block, which keeps
"Inc.", "U.S.", "EUR 1.5 mn.", "approx. 3.2 %" and decimals inside their sentences.
Chosen by measuring candidates on financial text shapes: docs/documents.md.
Copied next to the document model's model.py by model_repository/assemble.py.
"""

from __future__ import annotations

import re

import nupunkt

# "- ", "• ", "* ", "1. ", "2) ", "(a) ", "a) " at a line's start.
BULLET = re.compile(
    r"[ \t]*(?:[-\u2013\u2014\u2022\u25aa\u25cf\u25e6\u00b7*]|\(?\d{1,3}[.)]|\(?[a-z][.)]|\([ivx]{1,4}\))[ \t]+"
)
HEADING_WORDS = 8  # a line this short with no closing punctuation is a heading or a speaker
CLOSING = tuple(".!?;,")
WORD = re.compile(r"\w")
# Abbreviations that do not end a sentence however the next word is written ("approx. EUR 40 mn.");
# Punkt alone splits after them. "Inc.", "mn.", "U.S." can end one and are left to Punkt.
NEVER_LAST = re.compile(r"(?:\b(?:approx|ca|incl|excl|vs|e\.g|i\.e|mr|mrs|ms|dr|st|no|nos|fig|ref)\.)\Z", re.I)


def blocks(text: str):
    """(start, end) of layout blocks; bullet markers are left out of the block."""
    start = None
    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        end = pos + len(body)
        bullet = BULLET.match(body)
        if not body.strip():
            if start is not None:
                yield start, pos
                start = None
        else:
            if bullet and start is not None:
                yield start, pos
                start = None
            if start is None:
                start = pos + (bullet.end() if bullet else len(body) - len(body.lstrip()))
            stripped = body.rstrip()
            if (not stripped.endswith(CLOSING) and len(stripped.split()) <= HEADING_WORDS) or stripped.endswith(":"):
                line_start = pos + (bullet.end() if bullet else len(body) - len(body.lstrip()))
                if start < line_start:  # the paragraph before a heading or speaker turn ends there
                    yield start, pos
                yield line_start, end  # heading, speaker turn or a line that introduces a list
                start = None
        pos += len(line)
    if start is not None:
        yield start, len(text)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentences of `text` as (start, end) offsets, stripped of surrounding whitespace; spans
    without a letter or digit (rules, lone bullets) are left out."""
    spans = []
    for b_start, b_end in blocks(text):
        block = text[b_start:b_end]
        for s, e in nupunkt.sent_spans(block):
            piece = block[s:e]
            lead = len(piece) - len(piece.lstrip())
            s, e = b_start + s + lead, b_start + s + len(piece.rstrip())
            if e <= s or not WORD.search(text, s, e):
                continue
            # Punkt splits after "mn." or "bn." even before a lowercase word ("EUR 1.5 mn. in the quarter").
            if (
                spans
                and spans[-1][1] > b_start
                and (text[s].islower() or NEVER_LAST.search(text, spans[-1][0], spans[-1][1]))
            ):
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
    return spans
