"""Financial sentences written for this project, of very different lengths.

The parity gate scores these with PyTorch and ONNX Runtime; the last one is longer than
any model's max length so truncation is compared too.
"""

_FILING = (
    "The Board of Directors reviewed the quarterly results in detail, noting that revenue from "
    "the industrial segment declined for the third consecutive quarter while service margins "
    "improved on lower subcontracting costs, that the company repaid part of its revolving "
    "credit facility ahead of schedule, and that management expects the restructuring "
    "programme announced in March to generate annual savings of roughly EUR 40 million once "
    "fully implemented, although one-off charges related to site closures will weigh on "
    "operating profit during the remainder of the fiscal year. "
)

PARITY_SENTENCES = [
    "Profit rose.",
    "Shares fell 4% after the guidance cut.",
    "The company will publish its interim report on 25 April.",
    "Operating profit increased to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
    "Net sales decreased by 12 percent year-on-year, and the order backlog shrank to its lowest "
    "level since the financial crisis, prompting the company to warn of further job cuts.",
    "The bank kept its dividend unchanged.",
    "Moody's downgraded the issuer to junk, citing weak cash flow and rising leverage.",
    "Record quarterly earnings beat every analyst estimate and the stock hit an all-time high.",
    _FILING * 3,  # ~130 words
    _FILING * 14,  # well past 512 tokens: truncation
]
