"""The load test's texts: built-in sentences and the three file formats."""

from pathlib import Path

import pytest

from loadtest.corpus import SENTENCES, load_corpus

FPB = Path(__file__).resolve().parents[3] / "shared" / "data" / "financial_phrasebank" / "Sentences_AllAgree.txt"


def test_builtin_corpus_is_varied():
    assert 50 <= len(SENTENCES) <= 100
    assert len(set(SENTENCES)) == len(SENTENCES)
    lengths = sorted(len(s.split()) for s in SENTENCES)
    assert lengths[0] <= 6 and lengths[-1] >= 50  # headlines to filing paragraphs
    assert load_corpus() == SENTENCES and load_corpus() is not SENTENCES


def test_text_file_one_per_line(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("Profit rose.\n\n  Shares fell 3%.  \nGuidance unchanged.\n")
    assert load_corpus(path) == ["Profit rose.", "Shares fell 3%.", "Guidance unchanged."]


def test_csv_text_column(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text('id,Text,source\n1,"Revenue grew, margins held.",wire\n2,Dividend cut.,filing\n3,,x\n')
    assert load_corpus(path) == ["Revenue grew, margins held.", "Dividend cut."]


def test_csv_without_text_column_names_the_columns(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text("id,body\n1,Profit rose.\n")
    with pytest.raises(ValueError, match="no `text` column.*id, body"):
        load_corpus(path)


def test_financial_phrasebank_format_latin1(tmp_path):
    # FPB's format (latin-1, `sentence@label`), with sentences written here, not FPB's own.
    path = tmp_path / "Sentences_75Agree.txt"
    path.write_bytes(
        "Café chain lifts outlook .@positive\nThe board met in Jyväskylä .@neutral\n"
        "Losses widened to EUR 3 mn .@negative\n".encode("latin-1")
    )
    assert load_corpus(path) == [
        "Café chain lifts outlook .",
        "The board met in Jyväskylä .",
        "Losses widened to EUR 3 mn .",
    ]


def test_missing_and_empty_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="holds no text"):
        load_corpus(tmp_path / "empty.txt")


@pytest.mark.skipif(not FPB.exists(), reason="Financial PhraseBank is not on this machine")
def test_builtin_sentences_are_not_phrasebank_text():
    lines = [line for line in FPB.read_text("latin-1").splitlines() if line.strip()]
    phrasebank = {line.rsplit("@", 1)[0].strip().lower() for line in lines}
    assert not [s for s in SENTENCES if s.lower() in phrasebank]
    assert len(load_corpus(FPB)) == len(lines)
