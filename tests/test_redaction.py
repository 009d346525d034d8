"""asm's secrets, in every encoding, never leave in a comment, a log line or a push."""

from __future__ import annotations

import base64
import io
import logging
import random
import re
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from asm.guard.redaction import REDACTED, RedactingFilter, Secrets, forms_of, redact

# Shaped like the real thing, valid nowhere.
TOKEN = "ghp_R8x2mQv7Lk4Zt9Yw3Nc6Hb1Pj5Sd0Fg2Ae7X"
API_KEY = "sk-ant-api03-q7Wm2Xr9Tz4Kv8Ln3Bp6Hc1Dj5Fs0Gy-AbCdEfGh_IjKlMn"
REDIS_PASSWORD = "r3dis~?>pa?~>ss-word"  # its base64 has "+" and "/" at every alignment: the alphabets differ
FLOWER_PASSWORD = "fl0wer p@ss:w/rd&1"  # what quote, quote(safe="") and quote_plus each write differently
ALL = (TOKEN, API_KEY, REDIS_PASSWORD, FLOWER_PASSWORD)
SECRETS = Secrets(ALL)
DESIGN = Path(__file__).resolve().parents[1] / "README.md"


def encodings(secret: str) -> dict[str, str]:
    raw = secret.encode()
    standard, url_safe = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    return {
        "plain": secret,
        "hex": raw.hex(), "HEX": raw.hex().upper(),
        "hEx mixed": "".join(c.upper() if i % 3 else c for i, c in enumerate(raw.hex())),
        "base64": standard, "base64 unpadded": standard.rstrip("="),
        "base64url": url_safe, "base64url unpadded": url_safe.rstrip("="),
        "percent every byte": "".join(f"%{b:02X}" for b in raw),
        "percent every byte lower": "".join(f"%{b:02x}" for b in raw),
        "quote": quote(secret), "quote safe=''": quote(secret, safe=""), "quote_plus": quote_plus(secret),
        "quote lower": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe="")),
    }


CASES = [(name, secret, form) for secret in ALL for name, form in encodings(secret).items()]


@pytest.mark.parametrize("name, secret, form", CASES, ids=[f"{s[:6]}-{n}" for n, s, _ in CASES])
def test_each_encoding_is_found_and_redacted_in_longer_text(name: str, secret: str, form: str) -> None:
    text = f"curl -H 'X-Debug: {form}' https://api.example.com/v1/things?q=1"
    assert SECRETS.found_in(text)
    assert SECRETS.found_in(text.encode())
    assert SECRETS.redact(text) == f"curl -H 'X-Debug: {REDACTED}' https://api.example.com/v1/things?q=1"


def test_quoted_forms_differ_from_plain_for_a_password_with_specials() -> None:
    # Otherwise the test above would prove nothing for them.
    forms = {quote(FLOWER_PASSWORD), quote(FLOWER_PASSWORD, safe=""), quote_plus(FLOWER_PASSWORD)}
    assert len(forms) == 3 and FLOWER_PASSWORD not in forms
    for before in range(3):
        raw = bytes(before) + REDIS_PASSWORD.encode()
        assert base64.b64encode(raw) != base64.urlsafe_b64encode(raw)


def test_the_kind_of_form_is_told_never_the_value() -> None:
    raw = TOKEN.encode()
    assert SECRETS.form_in(f"x {TOKEN} y") == "plain"
    assert SECRETS.form_in(raw.hex().upper().encode()) == "hex"
    assert SECRETS.form_in(base64.urlsafe_b64encode(raw)) == "base64"
    assert SECRETS.form_in(quote(FLOWER_PASSWORD, safe="").lower()) == "percent"
    assert SECRETS.form_in(b"\xff\xfe" + TOKEN.encode("utf-16-le")) == "utf-16"
    assert SECRETS.form_in("nothing here") is None


@pytest.mark.parametrize("secret", ALL, ids=lambda s: s[:6])
@pytest.mark.parametrize("before", range(6))
@pytest.mark.parametrize("after", range(4))
def test_a_secret_inside_a_longer_base64_stream_is_found_at_each_alignment(secret: str, before: int,
                                                                             after: int) -> None:
    noise = random.Random(before * 10 + after)
    head, tail = noise.randbytes(before), noise.randbytes(after)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        stream = encode(head + secret.encode() + tail).decode()
        text = f"data:application/octet-stream;base64,{stream} end"
        assert SECRETS.found_in(text) and SECRETS.found_in(text.encode())
        cleaned = SECRETS.redact(text)
        assert REDACTED in cleaned and not SECRETS.found_in(cleaned)
        # The characters that only the bytes before it decide are left alone.
        assert cleaned.startswith(f"data:application/octet-stream;base64,{stream[:8 * before // 6]}")


def test_a_token_in_a_basic_auth_header_is_found() -> None:
    header = "Authorization: Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert SECRETS.found_in(header)
    cleaned = SECRETS.redact(header)
    assert cleaned.startswith("Authorization: Basic eC1hY2Nlc3MtdG9rZW46") and REDACTED in cleaned


def test_every_occurrence_goes_and_the_text_around_stays() -> None:
    text = f"a{TOKEN}b{TOKEN.encode().hex()}c{API_KEY}d\n{TOKEN}"
    assert redact(text, ALL) == f"a{REDACTED}b{REDACTED}c{REDACTED}d\n{REDACTED}"


def test_a_secret_that_contains_another_goes_whole() -> None:
    short, long = "abcd1234efgh", "xx-abcd1234efgh-yy"
    assert Secrets([short, long]).redact(f"<{long}>") == f"<{REDACTED}>"


def test_no_false_positive_on_ordinary_text() -> None:
    text = DESIGN.read_text() + Path(__file__).read_text().replace(TOKEN, "").replace(API_KEY, "")
    text = text.replace(REDIS_PASSWORD, "").replace(FLOWER_PASSWORD, "")
    assert not SECRETS.found_in(text)
    assert SECRETS.redact(text) == text


def test_no_false_positive_on_encodings_of_unrelated_data() -> None:
    noise = random.Random(7).randbytes(1 << 20)
    for blob in (base64.b64encode(noise), base64.urlsafe_b64encode(noise), noise.hex().encode(), noise):
        assert not SECRETS.found_in(blob)
    assert not SECRETS.found_in(base64.b64encode(noise).decode())


def test_a_near_miss_is_no_match() -> None:
    assert not SECRETS.found_in(TOKEN[:-1] + "Y")
    assert not SECRETS.found_in("ghp_" + "a" * 36)
    assert SECRETS.redact(TOKEN[:20]) == TOKEN[:20]


def test_short_secrets_are_redacted_plainly_but_not_hunted_in_encodings() -> None:
    secrets = Secrets(["abc", "pass1", "12345678"])
    assert secrets.values == ("pass1", "12345678")
    assert secrets.redact("abc pass1 cGFzczE= 7061737331") == f"abc {REDACTED} cGFzczE= 7061737331"
    assert secrets.redact(base64.b64encode(b"12345678").decode()) == REDACTED  # 8 characters: every form
    assert [form.kind for form in forms_of("pass1")] == ["plain"]
    assert forms_of("ab") == []


def test_a_secret_beyond_ascii_is_found_in_text_and_in_its_utf8_bytes() -> None:
    secret = "pässwörd-ünïcode"
    secrets = Secrets([secret])
    assert secrets.redact(f"a {secret} b") == f"a {REDACTED} b"
    assert secrets.form_in(f"a {secret} b".encode()) == "plain"
    assert secrets.form_in(quote(secret)) == "percent" and secrets.form_in(secret.encode().hex()) == "hex"


def test_empty_and_missing_values_change_nothing() -> None:
    nothing = Secrets(["", ""])
    assert not nothing and nothing.redact("text") == "text" and not nothing.found_in(b"text")
    assert redact("text", ()) == "text"


def test_file_contents_and_names_are_scanned_as_bytes_or_text() -> None:
    content = b"#!/bin/sh\n# deploy\nexport T=" + base64.b64encode(TOKEN.encode()) + b"\n"
    assert SECRETS.found_in(content)
    assert SECRETS.found_in(f"notes/{TOKEN.encode().hex()}.txt")
    assert SECRETS.found_in(TOKEN.encode("utf-16-be"))
    assert not SECRETS.found_in(b"\x00\x01binary\xff\xfe without secrets")


def test_megabytes_take_time_in_proportion_to_their_size() -> None:
    # A ratio measured in one run, not a wall-clock limit: four times the text may not cost ten times.
    def best_of_three(text: str) -> float:  # the best of several: a shared machine's pauses fall on some, not all
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            cleaned = redact(text, ALL)
            timings.append(time.perf_counter() - started)
            assert cleaned.endswith(REDACTED)
        return min(timings)

    prose = DESIGN.read_text() * 400
    small, big = best_of_three(prose[:1_000_000] + TOKEN), best_of_three(prose[:4_000_000] + TOKEN)
    assert big / small < 10


def test_redact_takes_any_iterable_and_keeps_its_signature() -> None:
    assert redact(f"x {TOKEN}", iter([TOKEN])) == f"x {REDACTED}"
    assert redact(f"x {TOKEN}", [TOKEN, API_KEY]) == f"x {REDACTED}"


def logged(secrets: tuple[str, ...]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    logger = logging.getLogger(f"asm.test.redaction.{len(secrets)}.{time.monotonic_ns()}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, stream


def test_a_log_record_loses_every_encoding_through_the_filter() -> None:
    logger, stream = logged(ALL)
    logger.info("cloning https://x-access-token:%s@github.com/acme/shop.git", TOKEN)
    logger.info("header %s", base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode())
    logger.warning("redis at redis://:%s@localhost:6379/0", quote(REDIS_PASSWORD, safe=""))
    logger.info("hex %s and %r", API_KEY.encode().hex(), {"flower": FLOWER_PASSWORD})
    output = stream.getvalue()
    assert not SECRETS.found_in(output)
    assert output.count(REDACTED) == 5
    assert "cloning https://x-access-token:[redacted]@github.com/acme/shop.git" in output


def test_a_traceback_in_a_log_record_is_redacted_too() -> None:
    logger, stream = logged(ALL)
    try:
        raise RuntimeError(f"push failed for https://{TOKEN}@github.com/acme/shop.git")
    except RuntimeError:
        logger.exception("push failed")
    output = stream.getvalue()
    assert "Traceback" in output and "RuntimeError: push failed for https://[redacted]@github.com" in output
    assert TOKEN not in output


def test_a_clean_record_is_left_as_it_was() -> None:
    logger, stream = logged(ALL)
    logger.info("issue %s#%d claimed", "acme/shop", 7)
    assert stream.getvalue() == "INFO issue acme/shop#7 claimed\n"


def test_anything_shaped_like_a_github_token_is_redacted_even_when_minted_after_the_secrets_were_fixed() -> None:
    installation = "ghs_" + "x1Y2" * 9  # a GitHub App's installation token, minted while the worker runs
    fine_grained = "github_pat_" + "A1_b" * 10
    said = redact(f"push with {installation} failed; also {fine_grained}.", ())
    assert installation not in said and fine_grained not in said and said.count(REDACTED) == 2
    assert redact("ghs_short is not a token", ()) == "ghs_short is not a token"
