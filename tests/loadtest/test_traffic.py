"""loadtest.traffic with fake senders: every call recorded, errors counted, no server."""

import time

from loadtest.traffic import TEXTS, Traffic, closed_loop


def fake_sender(fail_every: int = 0, seen: list | None = None):
    def make():
        count = [0]

        def send(payload):
            count[0] += 1
            if seen is not None:
                seen.append(payload)
            time.sleep(0.002)
            if fail_every and count[0] % fail_every == 0:
                raise ConnectionError("refused")

        return send, lambda: None

    return make


def test_traffic_records_every_call_with_its_caller_and_error():
    seen = []
    traffic = Traffic(fake_sender(fail_every=3, seen=seen), clients=2).start()
    time.sleep(0.2)
    calls = traffic.stop()
    assert len(calls) == len(seen) > 6
    assert {c.caller for c in calls} == {0, 1}
    assert set(seen) <= set(TEXTS)
    assert all(c.began <= c.ended for c in calls) and [c.ended for c in calls] == sorted(c.ended for c in calls)
    assert {c.error for c in calls if c.error} == {"ConnectionError: refused"}


def test_closed_loop_counts_only_the_window_and_sends_batches():
    seen = []
    result = closed_loop(
        fake_sender(seen=seen), ["a", "b", "c"], clients=2, duration_s=0.3, warmup_s=0.1, texts_per_request=2
    )
    summary = result.summary()
    assert summary["clients"] == 2 and summary["texts_per_request"] == 2 and summary["errors"] == 0
    assert 0 < summary["requests"] < len(seen)  # warm-up calls sent, not counted
    assert all(len(batch) == 2 for batch in seen)
    assert summary["texts_per_s"] == round(summary["requests"] * 2 / 0.3, 2)
    assert closed_loop(fake_sender(fail_every=1), ["a"], 1, 0.1, 0).summary()["requests"] == 0
