"""Which sentence splitter: candidates measured on financial text shapes (docs/documents.md).

    pip install pysbd==0.3.4 blingfire==0.1.8 sentencex==1.0.32 syntok==1.4.4   # candidates; nupunkt is pinned
    python -m benchmarks.splitters [--fpb /work/shared/data/financial_phrasebank/Sentences_75Agree.txt]

A sample is a list of documents, each built from its gold sentences and the layout that joins
them (spaces, wrapped lines, bullets, headings, speaker turns). SHAPES below were written for
this project in the shapes of filings, press releases and earnings-call transcripts; with
--fpb, Financial PhraseBank sentences (detokenized: "EUR 1.5 mn ." -> "EUR 1.5 mn.") are joined
into documents of 20-60 sentences as well. A gold sentence counts as recovered when one
predicted span is exactly it (whitespace runs compared as one space).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from benchmarks.markdown import row, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "model_repository" / "python_models"))
import sentences  # noqa: E402  (the served splitter)

# (layout, [gold sentences]): layout "text" joins with spaces, "wrapped" also wraps lines at 72
# characters, "lines" puts each gold item on its own line (bullets, headings, speaker turns:
# the marker is given in the item as "<marker>|<sentence>").
SHAPES = [
    (
        "text",
        [
            "Acme Holdings Inc. reported net sales of EUR 1.5 mn. in the third quarter.",
            "Operating profit rose approx. 3.2 % to USD 4.75 bn., up from USD 4.6 bn. a year earlier.",
            "The U.S. unit of Nordic Steel Corp. cut 120 jobs.",
            "Mr. J. R. Smith, the CFO, said margins would improve in H2.",
            "Shares closed at 12.40 euros, i.e. 2.1 % higher.",
        ],
    ),
    (
        "wrapped",
        [
            "Net revenue for fiscal 2023 was $4.2 billion, an increase of 8.5% compared with fiscal 2022, "
            "driven primarily by higher volumes in the U.S. and Europe.",
            "Gross margin decreased 120 basis points to 38.4%, reflecting higher input costs and unfavorable "
            "foreign exchange rates.",
            "We recorded restructuring charges of $57.3 million (approx. $0.41 per diluted share) in connection "
            "with the closure of two facilities.",
            'See Note 12, "Debt," in the Notes to Consolidated Financial Statements for further details.',
            "As of Dec. 31, 2023, we had $1.1 billion of cash and cash equivalents.",
        ],
    ),
    (
        "lines",
        [
            "|Item 7. Management's Discussion and Analysis",
            "|Results of Operations",
            "- |Revenue grew 12% year over year to $3.4 bn.",
            "- |Operating margin expanded to 21.7%",
            "- |Free cash flow of EUR 812 mn. was a record",
            "|Liquidity and Capital Resources",
            "|Our principal sources of liquidity are cash from operations and our revolving credit facility.",
        ],
    ),
    (
        "lines",
        [
            "|Operator",
            "|Good morning, and welcome to the XYZ Corp. fourth quarter 2023 earnings call.",
            "|Jane Doe -- Chief Financial Officer",
            "|Thank you, operator.",
            "|Revenue was up 4.5% in Q4.",
            "|We expect approx. 3 to 4% growth in fiscal 2024.",
            "|Question-and-Answer Session",
            "|Operator",
            "|Our first question comes from Mike Lee with J.P. Morgan.",
            "|Mike Lee -- J.P. Morgan -- Analyst",
            "|Thanks for taking my question.",
            "|Can you talk about pricing in the U.K. and Germany?",
        ],
    ),
    (
        "text",
        [
            "Fitch affirmed the company's BBB+ rating with a stable outlook.",
            "The bonds, due 2031, carry a 5.25% coupon.",
            "According to the company, sales in Q1 2024 fell 7 % to EUR 231.0 mn. from EUR 248.4 mn.",
            "The Board proposes a dividend of EUR 0.85 per share (2022: EUR 0.80).",
            "Earnings per share were USD -0.12 vs. USD 0.34 in the prior year.",
        ],
    ),
    (
        "lines",
        [
            "1. |Net sales increased by 5.2 % to EUR 205.5 mn.",
            "2. |Operating profit was EUR 23.5 mn., or 11.4 % of net sales.",
            "3. |The order book stood at EUR 1.02 bn. at the end of the period.",
            "(a) |The Group expects net sales to grow in 2024",
            "(b) |Capital expenditure will be approx. EUR 40 mn.",
        ],
    ),
    (
        "text",
        [
            "Stockmann Oyj Abp said on Monday its net loss widened to EUR 12.3 mn.",
            "Analysts at Nordea Bank AB had expected a loss of EUR 9.8 mn.",
            "The St. Petersburg store will close on Feb. 1.",
            "Sales at Lindex, its fashion chain, rose 3.1 pct.",
            '"We are not satisfied with the result," CEO Hannu Penttila said.',
        ],
    ),
    (
        "wrapped",
        [
            'The Company\'s 2.375% Senior Notes due 2029 (the "2029 Notes") were issued under an indenture '
            "dated as of May 5, 2021, among the Company, the guarantors named therein and U.S. Bank "
            "National Association, as trustee.",
            "Interest on the 2029 Notes is payable semi-annually on May 15 and Nov. 15 of each year.",
            "The Company may redeem the 2029 Notes, in whole or in part, at any time prior to Feb. 15, "
            "2029 at a redemption price equal to 100% of the principal amount plus a make-whole premium.",
            "No. 2 Holdings Ltd. and Alpha Co. are guarantors.",
        ],
    ),
]


def fpb_documents(path: Path, n_docs: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    from export.fpb import detokenize, read

    pool = [detokenize(s) for s, _ in read(path)]
    rng = random.Random(seed)
    return [("text", rng.sample(pool, rng.randint(20, 60))) for _ in range(n_docs)]


def build(layout: str, items: list[str]) -> tuple[str, list[str]]:
    """The document text and its gold sentences."""
    gold = [item.split("|", 1)[-1] for item in items]
    if layout == "lines":
        return "\n".join(item.replace("|", "", 1) for item in items) + "\n", gold
    text = " ".join(gold)
    if layout == "wrapped":
        lines, line = [], ""
        for word in text.split(" "):
            if line and len(line) + 1 + len(word) > 72:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        text = "\n".join(lines + [line])
    return text, gold


def candidates() -> dict:
    """name -> text -> [(start, end)]; those not installed are left out."""
    out = {"nupunkt + layout (served)": sentences.sentence_spans}
    import nupunkt

    out["nupunkt 0.8"] = nupunkt.sent_spans
    try:
        import pysbd

        seg = pysbd.Segmenter(language="en", clean=False, char_span=True)
        out["pysbd 0.3.4"] = lambda t: [(s.start, s.end) for s in seg.segment(t)]
    except ImportError:
        pass
    try:
        import blingfire

        out["blingfire 0.1.8"] = lambda t: blingfire.text_to_sentences_and_offsets(t)[1] if t.strip() else []
    except ImportError:
        pass
    try:
        import sentencex

        def sx(t):
            spans, pos = [], 0
            for piece in sentencex.segment("en", t):
                start = t.find(piece.strip(), pos)
                spans.append((start, start + len(piece.strip())))
                pos = spans[-1][1]
            return spans

        out["sentencex 1.0.32"] = sx
    except ImportError:
        pass
    try:
        from syntok import segmenter

        def st(t):
            spans = []
            for paragraph in segmenter.analyze(t):
                for sentence in paragraph:
                    spans.append(
                        (sentence[0].offset - len(sentence[0].spacing), sentence[-1].offset + len(sentence[-1].value))
                    )
            return spans

        out["syntok 1.4.4"] = st
    except ImportError:
        pass
    return out


def normal(text: str) -> str:
    return " ".join(text.split())  # a wrapped line's newline is a space


def recovered(text: str, gold: list[str], spans) -> int:
    predicted = {normal(text[s:e]) for s, e in spans}
    return sum(normal(g) in predicted for g in gold)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fpb", type=Path, help="a Financial PhraseBank Sentences_*Agree.txt")
    parser.add_argument("--fpb-docs", type=int, default=100)
    args = parser.parse_args(argv)
    samples = {"financial shapes": [build(layout, items) for layout, items in SHAPES]}
    if args.fpb:
        samples["FPB documents"] = [build(layout, items) for layout, items in fpb_documents(args.fpb, args.fpb_docs)]
    print("\n".join(table(["splitter", *(f"{name}: sentences recovered" for name in samples), "ms per 100 kB"], [])))
    speed_text = "".join(t + "\n\n" for t, _ in samples["financial shapes"]) * 40
    for name, split in candidates().items():
        cells = []
        for docs in samples.values():
            total = sum(len(g) for _, g in docs)
            got = sum(recovered(t, g, split(t)) for t, g in docs)
            cells.append(f"{got}/{total} ({100 * got / total:.1f}%)")
        start = time.perf_counter()
        split(speed_text)
        ms = (time.perf_counter() - start) * 1000 * 100_000 / len(speed_text)
        print(row(name, *cells, f"{ms:.0f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
