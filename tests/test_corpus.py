from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.corpus import ESCALATION_TRIGGER_IDS, Corpus, load_corpus
from assistant.errors import CorpusError

ARTICLE_HEADINGS = [
    "Jurisdiction Note",
    "Introduction",
    "What Stem Separation Actually Does",
    "Common Misconception",
    "How This Compares to Traditional Sampling",
    "Platform Terms and Conditions",
    "The Training Data Question",
    "Practical Risks for Producers",
    "The Mashup and Remix Context",
    "Safer Alternatives",
    "Practical Checklist",
    "When to Ask a Lawyer",
    "Sources",
    "Legal Disclaimer",
]


def test_article_sections_keep_their_headings_exactly(corpus: Corpus) -> None:
    headings = [s.heading for s in corpus.sections if s.source.id == "article"]
    assert headings == ARTICLE_HEADINGS


def test_every_section_is_an_exact_span_of_its_file(corpus: Corpus) -> None:
    for section in corpus.sections:
        assert corpus.text_of(section.source.id)[section.start : section.end] == section.text
        assert section.text.strip() == section.text and section.text


def test_statute_and_treaty_are_split_by_section_and_article(corpus: Corpus) -> None:
    statute = [s.heading for s in corpus.sections if s.source.kind == "statute"]
    treaty = [s.heading for s in corpus.sections if s.source.kind == "treaty"]
    assert statute[0] == "§ 101. Definitions" and "§ 106. Exclusive rights in copyrighted works" in statute
    assert len(statute) == 26
    assert treaty[0] == "Preamble" and treaty[-1] == "Article 25. Depositary" and len(treaty) == 26


@pytest.mark.parametrize(
    ("heading_start", "url"),
    [
        ("§ 106.", "https://www.copyright.gov/title17/92chap1.html#106"),
        ("§ 107.", "https://www.copyright.gov/title17/92chap1.html#107"),
        ("§ 106A.", "https://www.copyright.gov/title17/92chap1.html#106a"),
        (
            "Article 8.",
            "https://www.wipo.int/treaties/en/text/245166#:~:text=Article%208-,Right%20of%20Communication%20to%20the%20Public",
        ),
        ("Preamble", "https://www.wipo.int/treaties/en/text/245166#:~:text=Preamble"),
    ],
)
def test_section_urls_follow_the_cited_source(corpus: Corpus, heading_start: str, url: str) -> None:
    section = next(s for s in corpus.sections if s.heading.startswith(heading_start))
    assert section.url == url


def test_disclaimer_is_read_word_for_word_from_the_article(corpus: Corpus) -> None:
    article = (Path(corpus.directory) / "article.md").read_text(encoding="utf-8")
    assert corpus.disclaimer.startswith("This article is for general educational information only.")
    assert "\n## Legal Disclaimer\n\n" + corpus.disclaimer in article


def test_escalation_triggers_are_the_five_bullets_in_order(corpus: Corpus) -> None:
    triggers = corpus.escalation_triggers
    assert [t.id for t in triggers] == list(ESCALATION_TRIGGER_IDS)
    assert triggers[0].text == "You plan to commercially release a track containing AI-separated stems"
    assert triggers[-1].text == "You are negotiating a license for stems or remix rights"
    article = corpus.text_of("article")
    assert all(f"- {t.text}\n" in article for t in triggers)


def test_homepage_only_sources_are_known_but_have_no_text(corpus: Corpus) -> None:
    textless = [s for s in corpus.sources if not s.has_text]
    assert {s.id for s in textless} == {
        "music-business-worldwide",
        "billboard",
        "creative-commons",
        "electronic-frontier-foundation",
    }
    for source in textless:
        with pytest.raises(CorpusError):
            corpus.text_of(source.id)
        assert all(section.source.id != source.id for section in corpus.sections)


def test_corpus_matches_the_shared_copy_byte_for_byte(corpus: Corpus) -> None:
    shared = Path(corpus.directory).parent.parent / "shared" / "corpus"
    if not shared.is_dir():
        pytest.skip("no shared/ corpus beside this checkout")
    for path in shared.iterdir():
        assert (Path(corpus.directory) / path.name).read_bytes() == path.read_bytes(), path.name


def test_missing_text_file_is_a_clear_error(tmp_path: Path, corpus: Corpus) -> None:
    copy = tmp_path / "corpus"
    shutil.copytree(corpus.directory, copy)
    (copy / "wipo_wct.md").unlink()
    with pytest.raises(CorpusError, match=r"wipo_wct\.md is missing"):
        load_corpus(copy)


def test_missing_sources_yaml_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"No sources\.yaml"):
        load_corpus(tmp_path)


def test_fingerprint_changes_with_the_corpus(tmp_path: Path, corpus: Corpus) -> None:
    copy = tmp_path / "corpus"
    shutil.copytree(corpus.directory, copy)
    before = load_corpus(copy).fingerprint
    assert before == corpus.fingerprint
    with (copy / "article.md").open("a", encoding="utf-8") as handle:
        handle.write("\n")
    assert load_corpus(copy).fingerprint != before


def test_the_article_url_comes_from_the_setting_or_the_corpus(corpus: Corpus, tmp_path: Path) -> None:
    assert corpus.article.url is None  # the corpus as shipped names no canonical URL for the article
    given = load_corpus(corpus.directory, "https://example.org/stems")
    assert given.article_section("Safer Alternatives").url == "https://example.org/stems#safer-alternatives"
    copy = tmp_path / "corpus"
    shutil.copytree(corpus.directory, copy)
    article = copy / "article.md"
    article.write_text(
        article.read_text(encoding="utf-8").replace("kind: article\n", "kind: article\nurl: https://blog.test/a\n", 1),
        encoding="utf-8",
    )
    assert load_corpus(copy).article.url == "https://blog.test/a"
    assert load_corpus(copy, "https://example.org/stems").article.url == "https://example.org/stems"
