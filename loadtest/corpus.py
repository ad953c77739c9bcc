"""Texts the load test sends: a built-in set of financial sentences, or a file.

The built-in sentences were written for this project (short headlines to filing-length
paragraphs, positive, negative and neutral). `load_corpus(path)` reads:

- plain text: one text per line (blank lines skipped);
- CSV: the `text` column (or `sentence`);
- a Financial PhraseBank `Sentences_*Agree.txt` file: latin-1, `sentence@label` per line.
  Its license forbids redistribution: point at your copy, never commit it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

SENTENCES = [
    # short headlines
    "Profit jumped 18% on record orders.",
    "Shares slid after the CEO resigned.",
    "Dividend held at 40 cents.",
    "Regulator fines the lender EUR 12 million.",
    "Bond yields edged higher on Tuesday.",
    "Copper output fell short of guidance.",
    "The airline swung to a quarterly loss.",
    "Subscriber growth beat expectations again.",
    "The retailer will close 45 stores.",
    "Board approves a USD 2 billion buyback.",
    "Moody's affirms the A2 rating, outlook stable.",
    "Chipmaker raises full-year revenue forecast.",
    "Annual general meeting set for 14 May.",
    "Oil major writes down North Sea assets.",
    "Insurer's combined ratio improved to 91.2%.",
    # one-sentence news
    "Net sales for the third quarter rose to EUR 412 million from EUR 367 million a year earlier.",
    "The company expects operating profit to remain roughly at last year's level.",
    "Quarterly revenue declined 9% as demand for industrial pumps weakened in Europe and Asia.",
    "The group appointed a new chief financial officer effective from the beginning of next month.",
    "Gross margin narrowed by two percentage points because of higher freight and energy costs.",
    "The bank's core tier one capital ratio strengthened to 14.8% at the end of June.",
    "Analysts cut their price targets after the software maker lowered its subscription outlook.",
    "The merger is expected to close in the second half of the year, subject to regulatory approval.",
    "Order intake more than doubled, driven by large contracts from wind-farm developers.",
    "The steelmaker temporarily laid off 600 employees at its two domestic mills.",
    "Same-store sales grew 6.3%, the strongest increase in three years.",
    "The company will publish its half-year report on 24 July at 8:00 a.m.",
    "Cash flow from operations turned negative as inventories built up ahead of the season.",
    "The utility agreed to sell its district-heating business to a pension fund for EUR 1.1 billion.",
    "Earnings per share came in at 0.42, compared with 0.57 in the same period last year.",
    "The pharmaceutical firm said its late-stage trial met the primary endpoint.",
    "Credit card delinquencies rose for the fourth straight quarter.",
    "The shipping line's freight rates dropped sharply as new vessels entered service.",
    "Management reiterated its target of a 15% operating margin by 2027.",
    "The court ruled against the company in the patent dispute, and it plans to appeal.",
    "Rental income was stable, while occupancy in the office portfolio slipped to 88%.",
    "The brewer raised prices in most markets to offset higher barley and aluminium costs.",
    "A cyberattack disrupted production at three plants for most of the week.",
    "The fund's net asset value per share increased by 4.1% during the quarter.",
    "The telecom operator signed a five-year network-sharing agreement with a rival.",
    "Weak consumer demand forced the appliance maker to cut its sales forecast for the second time.",
    "The startup raised USD 85 million in a funding round led by existing investors.",
    "The lender set aside an additional EUR 230 million for expected credit losses.",
    "Tourism revenues recovered fully to pre-pandemic levels, lifting the hotel chain's results.",
    "The company has no plans to change its dividend policy.",
    # two or three sentences
    "Revenue grew 11% to USD 2.3 billion. Adjusted operating income rose faster, at 17%, as "
    "the company benefited from scale in its cloud segment.",
    "The paper mill will be shut down at the end of the year. About 380 jobs are affected, "
    "and the company is negotiating with unions on redundancy terms.",
    "The board proposes a dividend of EUR 1.20 per share. The payment would be made in two "
    "instalments, in April and October.",
    "Sales volumes were flat year on year. Lower average selling prices, however, reduced "
    "revenue by 7%, and the company now expects a weaker second half.",
    "The acquisition adds roughly 1,200 customers in Germany and Austria. It is expected to "
    "be accretive to earnings per share from the first full year.",
    "Inflation in the euro area slowed to 2.4% in October. Economists expect the central bank "
    "to keep rates unchanged at its next meeting.",
    "The carmaker recalled 90,000 vehicles over a faulty brake sensor. The cost of the recall "
    "is estimated at EUR 60 million and will be booked in the current quarter.",
    "Operating profit excluding one-off items was EUR 56.4 million, or 9.8% of net sales. "
    "The figure for the corresponding period was EUR 48.1 million, or 8.9%.",
    "The miner suspended guidance after flooding at its largest underground site. Production "
    "is not expected to resume before the end of the quarter.",
    "Customer deposits grew by EUR 3.4 billion. Net interest income rose 21% on higher "
    "market rates, more than offsetting the fall in fee income.",
    # paragraph-length, filing style
    "For the full year, the group reported net sales of EUR 5.6 billion, up 4% in comparable "
    "currencies, while operating profit declined slightly because of restructuring charges in "
    "the packaging division. Free cash flow improved to EUR 410 million thanks to tighter "
    "working-capital management, and net debt to EBITDA fell to 1.9 times.",
    "The company cautioned that the outlook remains uncertain. Order books in the construction "
    "segment are shorter than usual, customers are postponing investment decisions, and the "
    "strong currency is weighing on export margins. Management therefore expects comparable "
    "net sales to decline by 3 to 8 percent this year.",
    "Under the terms of the agreement, the buyer will pay EUR 14.50 in cash for each share, a "
    "premium of 32% over the closing price on the last trading day before the announcement. "
    "The board of directors has unanimously recommended that shareholders accept the offer, "
    "and shareholders representing 41% of the votes have irrevocably undertaken to do so.",
    "During the review period the group continued to invest in its digital platform, opened "
    "two new distribution centres and completed the integration of the logistics business "
    "acquired last year; these measures raised costs in the short term but are expected to "
    "support margin expansion from the next fiscal year onwards.",
    "Liquidity remained strong: cash and cash equivalents amounted to EUR 780 million and the "
    "undrawn committed credit facilities to EUR 500 million. No significant loans fall due "
    "during the next eighteen months, and the average interest rate on the loan portfolio "
    "was 3.1% at the end of the period.",
    "The investigation by the competition authority concerns pricing practices in the "
    "domestic market between 2019 and 2022. The company is cooperating fully, but it cannot "
    "yet estimate the size of a possible fine, and no provision has been recognised.",
    "Despite the difficult market, the division's order backlog reached a record EUR 2.9 "
    "billion, giving good visibility well into next year. Deliveries of the new engine range "
    "start in the spring, and the first customer feedback from field tests has been very "
    "positive.",
    "Net profit attributable to shareholders fell to EUR 12 million from EUR 75 million, "
    "mainly because of impairment charges on goodwill in the North American business, which "
    "has underperformed since the loss of two large retail customers at the start of the year.",
    "The real-estate company sold four shopping centres for a total of EUR 640 million, "
    "slightly above their book value. The proceeds will be used to repay bank loans and to "
    "fund the residential development pipeline in the capital region.",
    "Employee numbers at the end of the period stood at 12,480, compared with 11,950 a year "
    "earlier; most of the increase relates to the newly acquired service units in Poland "
    "and the Baltic countries.",
]

_FPB_LINE = re.compile(r"^(?P<text>.*)@(?P<label>positive|negative|neutral)\s*$")


def load_corpus(path: str | Path | None = None) -> list[str]:
    """The built-in sentences, or the texts in `path` (text, CSV or FPB format)."""
    if path is None or str(path) == "":
        return list(SENTENCES)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        content = raw.decode("latin-1")  # FPB files are latin-1
    lines = content.splitlines()
    if path.suffix.lower() == ".csv":
        texts = _csv_texts(lines, path)
    elif lines and all(_FPB_LINE.match(line) for line in lines[:20] if line.strip()):
        texts = [_FPB_LINE.match(line)["text"].strip() for line in lines if _FPB_LINE.match(line)]
    else:
        texts = [line.strip() for line in lines]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError(f"corpus file {path} holds no text")
    return texts


def _csv_texts(lines: list[str], path: Path) -> list[str]:
    reader = csv.DictReader(lines)
    columns = {name.strip().lower(): name for name in reader.fieldnames or []}
    for wanted in ("text", "sentence"):
        if wanted in columns:
            return [row[columns[wanted]] or "" for row in reader]
    raise ValueError(f"{path}: no `text` column (columns: {', '.join(reader.fieldnames or [])})")
