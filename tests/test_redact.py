"""Questions lose e-mail addresses, phone numbers and URLs before they are logged; legal text stays."""

from __future__ import annotations

import pytest

from assistant.redact import EMAIL_MARK, PHONE_MARK, URL_MARK, redact, redact_links


@pytest.mark.parametrize(
    "address",
    ["jane.doe@example.com", "j.doe+remix@mail.example.co.uk", "someone@corp.internal", "DJ_Name@label.music"],
)
def test_email_addresses_are_removed(address: str) -> None:
    assert redact(f"Write to {address} about my remix.") == f"Write to {EMAIL_MARK} about my remix."


@pytest.mark.parametrize(
    "url",
    [
        "https://www.copyright.gov/title17/92chap1.html#106",
        "http://example.com/track?id=42&t=1",
        "www.example.org/my-remix",
        "soundcloud.com/someone/stems",
        "ftp://files.example.net/stems.zip",
    ],
)
def test_urls_are_removed(url: str) -> None:
    assert redact(f"Is my upload at {url} infringing?") == f"Is my upload at {URL_MARK} infringing?"


@pytest.mark.parametrize(
    "phone",
    [
        "(202) 555-0143",
        "212-555-0199",
        "415.555.2671",
        "+1 202 555 0143",
        "+44 20 7946 0958",
        "020 7946 0958",
        "07700 900123",
        "+49 30 12345678",
        "030 1234567",
        "+33 1 42 68 53 00",
        "01 42 68 53 00",
        "+353 1 234 5678",
    ],
)
def test_phone_numbers_in_several_formats_are_removed(phone: str) -> None:
    assert redact(f"Call me on {phone} tomorrow.") == f"Call me on {PHONE_MARK} tomorrow."


def test_everything_at_once_keeps_the_question() -> None:
    text = "I'm jane@example.com, +44 20 7946 0958, see https://example.com/x — can I sell my remix?"
    assert redact(text) == f"I'm {EMAIL_MARK}, {PHONE_MARK}, see {URL_MARK} — can I sell my remix?"


@pytest.mark.parametrize(
    "legal",
    [
        "Does 17 U.S.C. § 107 cover a remix?",
        "What does Directive 2019/790 Article 17 say?",
        "Is CDPA 1988 s.16 relevant?",
        "Section 1201 of the DMCA, enacted 1998, and 37 CFR 201.40",
        "Statutory damages up to $150,000 per work under § 504(c)(2)",
        "Case No. 16-cv-02345 was decided on 2019-04-17.",
        "Stems at 44100 Hz in 5.1 surround, 24-bit, 320 kbps",
        "The U.S. Copyright Act of 1976, 17 U.S.C. §§ 101-1332",
    ],
)
def test_legal_references_numbers_and_dates_are_kept(legal: str) -> None:
    assert redact(legal) == legal


def test_regions_decide_which_national_formats_are_known() -> None:
    assert redact("Ring 020 7946 0958", regions=["US"]) == "Ring 020 7946 0958"
    assert redact("Ring 020 7946 0958", regions=["GB"]) == f"Ring {PHONE_MARK}"
    assert redact("Ring +44 20 7946 0958", regions=["US"]) == f"Ring {PHONE_MARK}"


def test_redaction_is_right_from_many_threads_at_once() -> None:
    """Request threads redact at the same time; each text keeps its own links (the finder is per thread)."""
    from concurrent.futures import ThreadPoolExecutor

    from assistant.redact import _linkify

    texts = [f"see https://example{n}.com/page{n} or mail user{n}@example.org, question {n}" for n in range(400)]
    expected = [f"see {URL_MARK} or mail {EMAIL_MARK}, question {n}" for n in range(400)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(redact_links, texts)) == expected
    with ThreadPoolExecutor(max_workers=1) as other:
        assert other.submit(_linkify).result() is not _linkify()
    assert _linkify() is _linkify()
