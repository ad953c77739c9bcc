"""finsent.bulk.merge (issue 19): `finsent merge` refuses a missing shard and expands a quoted pattern."""

from tests.client.bulk.test_shards import one_row_in_four_shards
from tests.client.test_cli import finsent


def test_merge_refuses_a_missing_shard_that_no_gap_would_show(triton, tmp_path):
    outputs = one_row_in_four_shards(triton, tmp_path, ".csv")
    owner = next(k for k, out in enumerate(outputs) if out.stat().st_size)
    others = [out for k, out in enumerate(outputs) if k != owner]
    # the records score keeps beside each output (OUTPUT.finsent.json) say which shards there are
    run = finsent("merge", *others, "-o", tmp_path / "merged.csv")
    assert (
        run.returncode == 2
        and run.stderr
        == f"error: shard {owner}/4 is missing (the outputs are shards "
        f"{', '.join(f'{k}/4' for k in range(4) if k != owner)})\n"
    ), run.stderr
    assert not list(tmp_path.glob("merged*"))
    # a quoted pattern is expanded (as it must be for gs://, which no shell expands)
    run = finsent("merge", tmp_path / "p*.csv", "-o", tmp_path / "merged.csv")
    assert run.returncode == 0 and "1 rows from 4 shard outputs" in run.stdout, run.stderr
    nothing = finsent("merge", tmp_path / "q*.csv", "-o", tmp_path / "none.csv")
    assert nothing.returncode == 2 and nothing.stderr == f"error: {tmp_path / 'q*.csv'} matches no file\n"
