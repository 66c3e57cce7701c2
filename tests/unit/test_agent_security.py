import pytest

from hilnas.agent.security import check_bind, is_loopback, read_token_file


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host):
    assert is_loopback(host)
    check_bind(host, token=None, insecure=False)  # allowed without a token


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_non_loopback_needs_token_or_insecure(host):
    assert not is_loopback(host)
    with pytest.raises(ValueError, match="without a token"):
        check_bind(host, token=None, insecure=False)
    check_bind(host, token="x" * 32, insecure=False)
    check_bind(host, token=None, insecure=True)


def test_token_file(tmp_path):
    good = tmp_path / "token"
    good.write_text("  s3cr3t-s3cr3t-s3cr3t-s3cr3t \n")
    assert read_token_file(good) == "s3cr3t-s3cr3t-s3cr3t-s3cr3t"
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ValueError, match="too short"):
        read_token_file(short)
    with pytest.raises(ValueError, match="cannot read token file"):
        read_token_file(tmp_path / "missing")
