"""Remove e-mail addresses, phone numbers and URLs from a question before it is logged.

- URLs and e-mail addresses: ``linkify-it-py`` (the link finder behind markdown-it's linkify), which knows
  schemes, bare domains (``www.example.com``, ``example.org/path``) and addresses (``jane@example.co.uk``).
- An e-mail backstop: linkify-it only accepts domains with a known top-level domain, so one short pattern
  also replaces anything of the form ``name@host.label`` (``jane@corp.internal``). Erring towards removal is
  the safe side here; no library offers that looser match.
- Phone numbers: ``phonenumbers``' ``PhoneNumberMatcher`` (libphonenumber's metadata), run once per region in
  ``settings.redact_phone_regions`` so national formats are found, with international ``+`` numbers found by
  any of them.

Each is replaced by a marker (``[email]``, ``[url]``, ``[phone]``), so a reader of the log still sees that
the question contained one. Legal references (``17 U.S.C. § 107``, ``Directive 2019/790``) are not numbers
libphonenumber accepts as valid, so they stay.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence

import phonenumbers
from linkify_it import LinkifyIt

EMAIL_MARK = "[email]"
URL_MARK = "[url]"
PHONE_MARK = "[phone]"
DEFAULT_REGIONS = ("US", "GB", "IE", "DE", "FR")

_EMAIL_BACKSTOP = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)


_local = threading.local()


def _linkify() -> LinkifyIt:
    """The calling thread's own link finder.

    ``LinkifyIt.match`` keeps the state of its last call on the instance, so request threads must not share
    one; building one costs about 0.3 ms, so each thread keeps its own.
    """
    finder: LinkifyIt | None = getattr(_local, "linkify", None)
    if finder is None:
        finder = _local.linkify = LinkifyIt()
    return finder


def _replace(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """Replace non-overlapping ``(start, end, mark)`` spans; where spans overlap the first one wins."""
    pieces: list[str] = []
    position = 0
    for start, end, mark in sorted(spans):
        if start < position:
            continue
        pieces += [text[position:start], mark]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def redact_links(text: str) -> str:
    """URLs become ``[url]``, e-mail addresses ``[email]``."""
    matches = _linkify().match(text) or []
    spans = [(m.index, m.last_index, EMAIL_MARK if m.schema == "mailto:" else URL_MARK) for m in matches]
    text = _replace(text, spans)
    return _EMAIL_BACKSTOP.sub(EMAIL_MARK, text)


def redact_phones(text: str, regions: Sequence[str] = DEFAULT_REGIONS) -> str:
    """Phone numbers valid in any of ``regions`` (or written with ``+``) become ``[phone]``."""
    spans: list[tuple[int, int, str]] = []
    for region in regions or (None,):
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            spans.append((match.start, match.end, PHONE_MARK))
    return _replace(text, spans)


def redact(text: str, regions: Sequence[str] = DEFAULT_REGIONS) -> str:
    """The text without e-mail addresses, URLs and phone numbers (links first, so a URL's digits go with it)."""
    return redact_phones(redact_links(text), regions)
