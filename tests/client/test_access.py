"""finsent.access without a server: the key file, its rotation, the constant-time check over every
key, and the per-key token bucket (the gateway over HTTP: test_gateway.py)."""

import hmac
import os

import pytest

from finsent.access import NO_KEY_BANNER, ApiKeys, RateLimit, TokenBucket, Unauthorized, credential, fingerprint


def write(path, text, bump_ns=0):
    path.write_text(text)
    if bump_ns:  # a rewrite within one mtime tick: Kubernetes' swap changes the inode too
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_ns))


def test_keys_one_per_line_and_rotation_without_a_restart(tmp_path):
    path = tmp_path / "api-keys"
    write(path, "old-key\n\n  second  \n")
    keys = ApiKeys(path=str(path))
    assert keys.check("old-key") == fingerprint(b"old-key") and keys.check("second")
    write(path, "new-key\n", bump_ns=1_000_000)
    assert keys.check("new-key") == fingerprint(b"new-key")
    with pytest.raises(Unauthorized):
        keys.check("old-key")


def test_kubernetes_secret_swap_is_seen(tmp_path):
    # A mounted Secret: api-keys -> ..data/api-keys, ..data -> a timestamped folder swapped at once.
    for stamp, key in (("..2026_01", "first"), ("..2026_02", "second")):
        (tmp_path / stamp).mkdir()
        (tmp_path / stamp / "api-keys").write_text(key + "\n")
    (tmp_path / "..data").symlink_to("..2026_01")
    (tmp_path / "api-keys").symlink_to("..data/api-keys")
    keys = ApiKeys(path=str(tmp_path / "api-keys"))
    assert keys.check("first")
    (tmp_path / "..data_tmp").symlink_to("..2026_02")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert keys.check("second")
    with pytest.raises(Unauthorized):
        keys.check("first")


def test_a_key_file_that_goes_away_keeps_the_keys_and_an_empty_one_refuses_all(tmp_path):
    path = tmp_path / "api-keys"
    write(path, "k1\n")
    keys = ApiKeys(path=str(path))
    path.unlink()
    assert keys.check("k1")
    write(path, "\n")
    for given in ("k1", ""):
        with pytest.raises(Unauthorized):
            keys.check(given)


def test_a_start_without_a_usable_key_file_fails_saying_why(tmp_path):
    with pytest.raises(ValueError, match="cannot read API key file .*missing"):
        ApiKeys(path=str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="holds no key"):
        ApiKeys(path=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="not both"):
        ApiKeys("k", str(tmp_path / "empty"))


def test_every_key_is_compared_whichever_matches(tmp_path, monkeypatch):
    (tmp_path / "api-keys").write_text("a\nb\nc\n")
    keys = ApiKeys(path=str(tmp_path / "api-keys"))
    calls = []
    monkeypatch.setattr(hmac, "compare_digest", lambda x, y: calls.append(y) or x == y)
    for given in ("a", "c", "wrong"):
        calls.clear()
        try:
            keys.check(given)
        except Unauthorized:
            pass
        assert calls == [b"a", b"b", b"c"], given


def test_credential_headers_and_banner():
    assert credential({"X-API-Key": "k"}) == "k"
    assert credential({"authorization": "Bearer  k "}) == "k"
    assert credential({"authorization": "Basic k"}) == ""
    assert ApiKeys().describe() == NO_KEY_BANNER and not ApiKeys().required
    assert ApiKeys("k").required and "required" in ApiKeys("k").describe()


def test_token_bucket_allows_the_burst_then_says_when_to_come_back():
    bucket = TokenBucket(rate=2, burst=3, stamp=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0  # one token back after 1/rate s
    limit = RateLimit(0)
    assert all(limit.retry_after("k") == 0 for _ in range(1000))  # 0: no limit
    limit = RateLimit(1, burst=1)
    assert limit.retry_after("k") == 0 and limit.retry_after("k") == 1 and limit.retry_after("other") == 0


def test_finsent_gateway_refuses_to_start_without_a_usable_key_file(tmp_path, capsys):
    from finsent import cli

    assert cli.main(["gateway", "--api-key-file", str(tmp_path / "missing")]) == 2
    assert "error: cannot read API key file" in capsys.readouterr().err
