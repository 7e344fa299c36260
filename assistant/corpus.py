"""Load the article and its cited sources from ``corpus/``.

The files are read as they are (never rewritten), and every section keeps its
character span in its file, so any passage taken from a section can be
checked against the file by plain string comparison.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import yaml

from assistant.errors import CorpusError

SourceKind = Literal["article", "statute", "treaty", "homepage"]

ARTICLE_ID = "article"
DISCLAIMER_HEADING = "Legal Disclaimer"
ESCALATION_HEADING = "When to Ask a Lawyer"
JURISDICTION_HEADING = "Jurisdiction Note"
SOURCES_HEADING = "Sources"
CHECKLIST_HEADING = "Practical Checklist"

# The five "When to Ask a Lawyer" bullets, in the article's order, get these ids.
# Only the ids live here; the wording is always read from the article.
ESCALATION_TRIGGER_IDS = (
    "commercial_release",
    "claim_or_takedown",
    "building_product",
    "copyright_exception",
    "license_negotiation",
)

_HEADING = re.compile(r"^## (?P<heading>.+?)[ \t]*$", re.MULTILINE)
_BULLET = re.compile(r"^- (?P<text>.+?)[ \t]*$", re.MULTILINE)
_FRONT_MATTER = re.compile(r"\A---\r?\n(?P<yaml>.*?)\r?\n---\r?\n", re.DOTALL)
_STATUTE_NUMBER = re.compile(r"^§\s*(?P<number>\d+[A-Za-z]?)\.")


@dataclass(frozen=True)
class Source:
    """One entry of sources.yaml: the article itself or a source it cites."""

    id: str
    title: str
    url: str | None
    kind: SourceKind
    text_file: str | None
    number_in_article: int | None = None
    what_it_is: str = ""

    @property
    def has_text(self) -> bool:
        """Homepage-only sources have no text and may never support a claim."""
        return self.text_file is not None


@dataclass(frozen=True)
class Section:
    """A ``## `` section of a corpus file; ``start``/``end`` delimit its body in the file."""

    source: Source
    heading: str
    index: int
    url: str | None
    file: str
    start: int
    end: int
    text: str = field(repr=False)


@dataclass(frozen=True)
class EscalationTrigger:
    """One 'When to Ask a Lawyer' bullet with its stable id."""

    id: str
    text: str


@dataclass
class Corpus:
    """The loaded corpus: sources, their file texts and their sections."""

    directory: Path
    article: Source
    sources: list[Source]
    texts: dict[str, str]
    sections: list[Section]

    def text_of(self, source_id: str) -> str:
        """Full text of a source's file (the string every quote must be a slice of)."""
        try:
            return self.texts[source_id]
        except KeyError:
            raise CorpusError(f"Source '{source_id}' has no text in the corpus.") from None

    def source(self, source_id: str) -> Source:
        """Look a source up by id."""
        for source in [self.article, *self.sources]:
            if source.id == source_id:
                return source
        raise CorpusError(f"Unknown source id '{source_id}'.")

    def section(self, source_id: str, heading: str) -> Section:
        """Look a section up by source and exact heading."""
        for section in self.sections:
            if section.source.id == source_id and section.heading == heading:
                return section
        raise CorpusError(f"Source '{source_id}' has no section headed '{heading}'.")

    def article_section(self, heading: str) -> Section:
        """A section of the article by its exact heading."""
        return self.section(self.article.id, heading)

    @cached_property
    def disclaimer(self) -> str:
        """The article's Legal Disclaimer, word for word."""
        return self.article_section(DISCLAIMER_HEADING).text

    @cached_property
    def jurisdiction_note(self) -> str:
        """The article's jurisdiction note (where its analysis applies)."""
        return self.article_section(JURISDICTION_HEADING).text

    @cached_property
    def escalation_triggers(self) -> list[EscalationTrigger]:
        """The 'When to Ask a Lawyer' bullets, verbatim, in the article's order."""
        body = self.article_section(ESCALATION_HEADING).text
        bullets = [match.group("text") for match in _BULLET.finditer(body)]
        if len(bullets) != len(ESCALATION_TRIGGER_IDS):
            raise CorpusError(
                f"'{ESCALATION_HEADING}' has {len(bullets)} bullets; the assistant expects "
                f"{len(ESCALATION_TRIGGER_IDS)}. Update ESCALATION_TRIGGER_IDS to match the article."
            )
        return [EscalationTrigger(id=i, text=t) for i, t in zip(ESCALATION_TRIGGER_IDS, bullets, strict=True)]

    @cached_property
    def checklist(self) -> list[str]:
        """The article's Practical Checklist items, verbatim, in its order."""
        body = self.article_section(CHECKLIST_HEADING).text
        items = [match.group("text") for match in _BULLET.finditer(body)]
        if not items:
            raise CorpusError(f"'{CHECKLIST_HEADING}' has no '- ' items; restore it from the shared corpus.")
        return items

    @cached_property
    def urls(self) -> frozenset[str]:
        """Every URL the corpus names: the only places answers may link to."""
        found = {source.url for source in [self.article, *self.sources] if source.url}
        found |= {section.url for section in self.sections if section.url}
        return frozenset(found)

    @cached_property
    def fingerprint(self) -> str:
        """Hash of sources.yaml and every text file: changes whenever the corpus does."""
        digest = hashlib.sha256()
        for path in sorted(self.directory.iterdir()):
            if path.is_file() and path.suffix in {".md", ".yaml", ".yml"}:
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()


def _require(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record or record[key] in (None, ""):
        raise CorpusError(f"sources.yaml: {where} lacks '{key}'. Restore it from the shared corpus.")
    return record[key]


def _kind_of(record: dict[str, Any]) -> SourceKind:
    text_file = record.get("text_file")
    if not text_file:
        return "homepage"
    return "treaty" if "wipo" in str(text_file).lower() else "statute"


def _section_url(source: Source, heading: str) -> str | None:
    """The URL a reader should follow for a section.

    Statute sections get their own anchor (the Copyright Office's edition has one per section). The treaty's page
    has no anchors, so its articles get a text fragment (``#:~:text=``) naming the article's heading: browsers that
    support text fragments scroll to it and highlight it, others open the page at its top.
    """
    if source.url is None:
        return None
    if source.kind == "statute":
        match = _STATUTE_NUMBER.match(heading)
        if match:
            return source.url.split("#", 1)[0] + "#" + match.group("number").lower()
    if source.kind == "treaty" and "#" not in source.url:
        number, _, title = heading.partition(". ")
        fragment = f"{quote(number, safe='')}-,{quote(title, safe='')}" if title else quote(heading, safe="")
        return f"{source.url}#:~:text={fragment}"
    return source.url


def _front_matter(text: str) -> dict[str, Any]:
    """The YAML front matter at the top of a corpus file (empty when there is none or it does not parse)."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group("yaml"))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def article_url_of(directory: Path, record: dict[str, Any]) -> str | None:
    """The article's canonical URL as the corpus gives it, if it does.

    sources.yaml's ``url`` first, else the front matter's ``canonical_url`` or ``url``. The corpus as shipped
    names none, so ``ASSISTANT_ARTICLE_URL`` supplies it.
    """
    if record.get("url"):
        return str(record["url"])
    path = directory / str(record.get("text_file", ""))
    if not path.is_file():
        return None
    front = _front_matter(path.read_text(encoding="utf-8"))
    found = front.get("canonical_url") or front.get("url")
    return str(found) if found else None


def _parse_sections(source: Source, file_name: str, text: str, article_url: str | None) -> list[Section]:
    headings = list(_HEADING.finditer(text))
    sections: list[Section] = []
    for index, match in enumerate(headings):
        body_start = match.end()
        body_end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        raw = text[body_start:body_end]
        start = body_start + (len(raw) - len(raw.lstrip()))
        end = body_start + len(raw.rstrip())
        heading = match.group("heading")
        if source.kind == "article":
            url = f"{article_url}#{slugify(heading)}" if article_url else None
        else:
            url = _section_url(source, heading)
        sections.append(
            Section(
                source=source,
                heading=heading,
                index=index,
                url=url,
                file=file_name,
                start=start,
                end=end,
                text=text[start:end],
            )
        )
    return sections


def slugify(heading: str) -> str:
    """GitHub-style anchor for a heading."""
    slug = re.sub(r"[^\w\s-]", "", heading.lower())
    return re.sub(r"\s+", "-", slug.strip())


def load_corpus(directory: Path, article_url: str | None = None) -> Corpus:
    """Read ``sources.yaml`` and every text it names; fail with a clear message if anything is missing.

    ``article_url`` (the setting) wins over a URL the corpus gives for the article.
    """
    manifest_path = directory / "sources.yaml"
    if not manifest_path.is_file():
        raise CorpusError(f"No sources.yaml in {directory}. Copy the corpus into that folder (see README).")
    try:
        manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CorpusError(f"sources.yaml does not parse: {error}") from error
    if not isinstance(manifest, dict) or "article" not in manifest or "sources" not in manifest:
        raise CorpusError("sources.yaml needs an 'article' record and a 'sources' list.")

    article_record = manifest["article"]
    article_url = article_url or article_url_of(directory, article_record)
    article = Source(
        id=_require(article_record, "id", "the article"),
        title=_require(article_record, "title", "the article"),
        url=article_url,
        kind="article",
        text_file=_require(article_record, "text_file", "the article"),
    )
    sources = [
        Source(
            id=_require(record, "id", f"source #{position}"),
            title=_require(record, "title_as_cited", f"source #{position}"),
            url=record.get("url"),
            kind=_kind_of(record),
            text_file=record.get("text_file"),
            number_in_article=record.get("number_in_article"),
            what_it_is=str(record.get("what_it_is", "")).strip(),
        )
        for position, record in enumerate(manifest["sources"], start=1)
    ]

    texts: dict[str, str] = {}
    sections: list[Section] = []
    for source in [article, *sources]:
        if source.text_file is None:
            continue
        path = directory / source.text_file
        if not path.is_file():
            raise CorpusError(f"{source.id}: text file {path} is missing. Copy it from the shared corpus.")
        # newline="" keeps the file's characters exactly as stored, so spans are true file offsets.
        with path.open(encoding="utf-8", newline="") as handle:
            text = handle.read()
        texts[source.id] = text
        parsed = _parse_sections(source, source.text_file, text, article_url)
        if not parsed:
            raise CorpusError(f"{path.name} has no '## ' section headings.")
        sections.extend(parsed)

    return Corpus(directory=directory, article=article, sources=sources, texts=texts, sections=sections)
