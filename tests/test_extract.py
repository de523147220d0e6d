"""extract_main_text: keeps the article, drops boilerplate, falls back to lxml, never raises."""

from __future__ import annotations

from typing import Any

import pytest
import trafilatura

from tools._extract import extract_main_text

ARTICLE = """<!doctype html><html><head><title>Tide tables explained - Coastal Weekly</title>
<script>var tracking = "should never appear";</script><style>body { color: red; }</style></head><body>
<header><nav><a href="/">Home</a> | <a href="/subscribe">Subscribe now</a> |
<a href="/login">Log in</a></nav></header>
<main><article>
<h1>Tide tables explained</h1>
<p>Tides are driven mainly by the gravitational pull of the Moon, with the Sun adding a smaller effect.
Twice a month, at new and full moon, the two line up and produce the larger spring tides.</p>
<p>Neap tides happen when the Sun and Moon pull at right angles, so the difference between high and low
water is smallest; harbour masters publish tables a year ahead using harmonic analysis.</p>
</article></main>
<aside><h3>Related</h3><ul><li><a href="/x">Ten best beaches</a></li>
<li><a href="/y">Surf report</a></li></ul></aside>
<footer>&copy; 2026 Coastal Weekly Ltd. All rights reserved. <a href="/privacy">Privacy</a></footer>
</body></html>"""


def test_article_text_is_kept_and_boilerplate_dropped() -> None:
    title, text = extract_main_text(ARTICLE, url="https://coastal.example/tides")
    assert "Tide tables explained" in title
    assert "gravitational pull of the Moon" in text
    assert "harmonic analysis" in text
    for boilerplate in (
        "Subscribe now",
        "All rights reserved",
        "Ten best beaches",
        "should never appear",
        "color: red",
    ):
        assert boilerplate not in text


@pytest.mark.parametrize(
    "html",
    [
        "",
        "   \n\t ",
        "<<<>>><<",
        "<html><body><p>unclosed <b>bold <div>tail text <table><tr><td>cell",
        "\x00\x01\x02 binary garbage \xff\xfe",
        '<?xml version="1.0" encoding="utf-8"?><html><body><p>declared xml</p></body></html>',
        "<div>" * 5000 + "deep" + "</div>" * 5000,
        "<html><head><script>only()</script></head><body></body></html>",
        "<!-- just a comment -->",
        "<p>" + "&#" * 1000 + "</p>",
    ],
)
def test_malformed_html_never_raises(html: str) -> None:
    title, text = extract_main_text(html, url="https://example.org/")
    assert isinstance(title, str) and isinstance(text, str)
    assert "only()" not in text
    assert "\n\n\n" not in text and text == text.strip()


def test_malformed_html_still_yields_its_text() -> None:
    _, text = extract_main_text(
        "<html><body><p>unclosed paragraph about otters <div>and a stray div", url="https://example.org/"
    )
    assert "otters" in text and "stray div" in text
    _, text = extract_main_text(
        '<?xml version="1.0" encoding="utf-8"?><html><body><p>declared xml</p></body></html>',
        url="https://example.org/",
    )
    assert "declared xml" in text


def test_lxml_fallback_when_trafilatura_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trafilatura, "bare_extraction", lambda *_a, **_k: None)
    title, text = extract_main_text(ARTICLE, url="https://coastal.example/tides")
    assert title == "Tide tables explained - Coastal Weekly"  # from <title>
    assert "gravitational pull of the Moon" in text
    assert "should never appear" not in text and "color: red" not in text  # script/style dropped
    assert "Tide tables explained\n" in text  # block elements become separate lines


def test_lxml_fallback_when_trafilatura_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> None:
        raise RecursionError("too deep")

    monkeypatch.setattr(trafilatura, "bare_extraction", explode)
    title, text = extract_main_text("<title>T</title><p>still here</p>", url="https://example.org/")
    assert (title, text) == ("T", "still here")


def test_title_is_a_single_line() -> None:
    title, _ = extract_main_text(
        "<html><head><title>Line one\n   line two</title></head><body><p>x</p></body></html>",
        url="https://example.org/",
    )
    assert "\n" not in title and "Line one" in title
