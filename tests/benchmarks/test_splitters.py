"""benchmarks.splitters (which sentence splitter, docs/documents.md): the table is written for the
candidates installed, on its own shapes and on FPB-format documents; the scoring it rests on."""

from benchmarks import splitters
from tests.export.fpb_data import sample_file


def test_a_gold_sentence_counts_only_when_one_span_is_exactly_it():
    text, gold = splitters.build("lines", ["- |Revenue grew 12%.", "|Outlook"])
    assert (text, gold) == ("- Revenue grew 12%.\nOutlook\n", ["Revenue grew 12%.", "Outlook"])
    assert splitters.recovered(text, gold, [(2, 19), (20, 27)]) == 2
    assert splitters.recovered(text, gold, [(0, 19), (20, 27)]) == 1  # the bullet is not the sentence
    wrapped, _ = splitters.build("wrapped", ["word " * 30 + "end."])
    assert max(len(line) for line in wrapped.splitlines()) <= 72
    assert splitters.recovered(wrapped, ["word " * 30 + "end."], [(0, len(wrapped))]) == 1  # newlines are spaces


def test_the_table_has_a_row_per_candidate_and_a_column_per_sample(tmp_path, capsys):
    fpb, _ = sample_file(tmp_path / "Sentences_75Agree.txt", 200)
    assert splitters.main(["--fpb", str(fpb), "--fpb-docs", "3"]) == 0
    header, rule, *rows = capsys.readouterr().out.splitlines()
    assert "financial shapes: sentences recovered" in header and "FPB documents: sentences recovered" in header
    assert len(rows) == len(splitters.candidates()) and rows[0].startswith("| nupunkt + layout (served) |")
    total = sum(len(gold) for _, gold in splitters.SHAPES)
    assert all(row.count("|") == header.count("|") and f"/{total} (" in row for row in rows)
