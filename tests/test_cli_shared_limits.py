"""``--redis-url`` / ``OXYSTATS_REDIS_URL`` and ``--account-name``: the CLI shares its limits."""

from __future__ import annotations

import redis
from cli_helpers import ENV, invoke, usage_args

from oxystats._shared import fingerprint
from oxystats.emulator import RunningEmulator
from oxystats.testing import DEFAULT_KEY, RunningRedis


def account_keys(url: str, name: str) -> list[str]:
    """The Redis keys of account ``name``."""
    client = redis.Redis.from_url(url)
    try:
        return [key.decode() for key in client.scan_iter(match=f"oxystats:{{{name}}}:*")]
    finally:
        client.close()


def test_redis_url_and_account_name_share_the_limits(
    oxystats_emulator: RunningEmulator, oxystats_redis: RunningRedis
) -> None:
    """With --redis-url and --account-name, the usage command's limits live in that Redis."""
    result = invoke(
        oxystats_emulator,
        *usage_args("--redis-url", oxystats_redis.url, "--account-name", "cli-team", "-q"),
    )
    assert result.exit_code == 0, result.stderr
    keys = account_keys(oxystats_redis.url, "cli-team")
    assert any(fingerprint(DEFAULT_KEY) in key for key in keys)
    assert not any(DEFAULT_KEY in key for key in keys)


def test_redis_url_from_the_environment(
    oxystats_emulator: RunningEmulator, oxystats_redis: RunningRedis
) -> None:
    """OXYSTATS_REDIS_URL does what --redis-url does; the account name defaults to 'default'."""
    result = invoke(
        oxystats_emulator, "instances", env={**ENV, "OXYSTATS_REDIS_URL": oxystats_redis.url}
    )
    assert result.exit_code == 0, result.stderr
    assert account_keys(oxystats_redis.url, "default")


def test_bad_redis_url_or_name_is_a_usage_error(oxystats_emulator: RunningEmulator) -> None:
    """A URL that is not redis:// (or a name Redis keys cannot carry): one line, exit 2."""
    for extra in (
        ["--redis-url", "http://cache:6379"],
        ["--redis-url", "redis://x", "--account-name", "a b"],
    ):
        result = invoke(oxystats_emulator, "instances", *extra)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.count("\n") == 1
