"""The validators behind the catalogue, against independently computed values."""

from __future__ import annotations

import random

import pytest

from secmw.redact import _checks as check
from tests.redact_corpus import age_key, crc_token, jwt, luhn_card


def test_crc32_tail_accepts_real_checksums_and_refuses_one_char_off() -> None:
    rng = random.Random(1)
    for _ in range(50):
        token = crc_token(rng, "ghp_")
        assert check.crc32_tail(token)
        assert not check.crc32_tail(token[:-1] + ("0" if token[-1] != "0" else "1"))


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        pytest.param("4111111111111111", True, id="visa-test-number"),
        pytest.param("4111111111111112", False, id="visa-off-by-one"),
        pytest.param("5500 0000 0000 0004", True, id="mastercard-spaced"),
        pytest.param("3782-822463-10005", True, id="amex-dashed"),
        pytest.param("0000000000000000", False, id="all-zero"),
        pytest.param("9111111111111111", False, id="unknown-issuer"),
        pytest.param("411111111111", False, id="too-short"),
    ],
)
def test_card_numbers(number: str, valid: bool) -> None:
    assert check.card_number(number) is valid


def test_generated_cards_and_age_keys_validate() -> None:
    rng = random.Random(2)
    for _ in range(30):
        assert check.card_number(luhn_card(rng))
        key = age_key(rng)
        assert check.bech32(key)
        assert not check.bech32(key[:-1] + ("Q" if key[-1] != "Q" else "P"))


def test_jwt_parts_must_be_json_objects() -> None:
    token = jwt(random.Random(3))
    assert check.jwt_parts(token)
    header, payload, signature = token.split(".")
    assert not check.jwt_parts(f"{header}.eyJub3Rqc29u.{signature}")
    assert not check.jwt_parts(f"{header}.{payload}")


@pytest.mark.parametrize(
    ("value", "random_looking"),
    [
        pytest.param("Zq8#kL2!vB9xW4$m", True, id="password"),
        pytest.param("changeme", False, id="placeholder"),
        pytest.param("${DB_PASSWORD}", False, id="env-reference"),
        pytest.param("{{ vault.password }}", False, id="template"),
        pytest.param("3f2b8a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", False, id="uuid"),
        pytest.param("da39a3ee5e6b4b0d3255bfef95601890afd80709", False, id="git-sha"),
        pytest.param("aaaaaaaaaaaaaaaa", False, id="low-entropy"),
        pytest.param("my_config.value", False, id="identifier"),
        pytest.param("xxxxxxxxxxxxxxxx", False, id="xxxx"),
    ],
)
def test_random_looking(value: str, random_looking: bool) -> None:
    assert check.random_looking(value) is random_looking


def test_basic_credentials_need_user_and_password() -> None:
    assert check.basic_credentials("dXNlcjpodW50ZXIy")  # user:hunter2
    assert not check.basic_credentials("dXNlcg==")  # user
    assert not check.basic_credentials("not base64!")


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        # A long random key that happens to hold a short placeholder word is a key.
        ("sk-ant-api03-Q7vLm2XxXx9pR4tZb8NcK3wYd6Hj1FsUe5Ga0Vo", True),
        ("hvs.CAESIFake9pR4tZb8NcK3wYd6Hj1FsUe5Ga0VoQ7vLm2", True),
        ("glpat-Q7vL123456m2p9R4tZb8NcK3wYd6Hj1FsU", True),
        # Documentation values are still refused, short or long.
        ("sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", False),
        ("sk-ant-api03-EXAMPLEKEYQ7vLm2p9R4tZb8NcK3wYd6Hj1", False),
        ("hvs.fakefakefakeZb8NcK3wYd6Hj1FsUe5Ga0VoQ7", False),
        ("glpat-<your-token-goes-here>0123456789ab", False),
        ("ghp_xxxx9pR4tZb8NcK3wYd", False),
    ],
)
def test_placeholder_words_by_chance_in_long_keys(value: str, kept: bool) -> None:
    assert check.not_placeholder(value) is kept
