"""Main-text extraction from HTML: trafilatura first, a plain lxml text dump when it finds nothing.

Pages are hostile and often broken, so nothing here raises: the worst case is an empty string. Callers
run it in a thread; a document over `LARGE_HTML_CHARS` is extracted without metadata and without
trafilatura's fallback comparison (the title comes from `<title>`), because those passes make single
regex calls over the whole document that hold the GIL for a quarter of a second each on 5 MB, long
enough to starve the event loop's heartbeat in the other thread.
"""

from __future__ import annotations

import html as htmllib
import logging
import re
from typing import Final

import trafilatura
from lxml import etree  # type: ignore[import-untyped]  # no stubs installed
from lxml import html as lxml_html

logger = logging.getLogger(__name__)

LARGE_HTML_CHARS: Final = 1_000_000
_TITLE: Final = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TITLE_SEARCH_CHARS: Final = 65_536
_XML_DECLARATION: Final = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_BLANK_LINES: Final = re.compile(r"\n{3,}")
_SPACES: Final = re.compile(r"[ \t\r\f\v\u00a0]+")
_NOT_CONTENT: Final = ("script", "style", "noscript", "template", "svg", "head")
_BLOCKS: Final = frozenset(
    {"p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote"}
    | {"section", "article", "header", "footer", "nav", "table", "ul", "ol", "dl", "dt", "dd"}
)


def extract_main_text(html: str, *, url: str) -> tuple[str, str]:
    """Return `(title, text)` of an HTML document; boilerplate (nav, footer, ads) is dropped when possible."""
    title, text = _trafilatura(html, url=url)
    if not text or (not title and len(html) <= LARGE_HTML_CHARS):  # a big page without a title keeps none
        fallback_title, fallback_text = _lxml_fallback(html)
        title = title or fallback_title
        text = text or fallback_text
    return _clean(title).replace("\n", " "), _clean(text)


def _trafilatura(html: str, *, url: str) -> tuple[str, str]:
    large = len(html) > LARGE_HTML_CHARS
    try:
        document = trafilatura.bare_extraction(
            html, url=url, with_metadata=not large, fast=large, include_comments=False, include_tables=True
        )
    except Exception:  # trafilatura on hostile markup: log and fall back, never fail the fetch
        logger.debug("trafilatura failed on %s", url, exc_info=True)
        return "", ""
    if document is None:
        return "", ""
    title = _html_title(html) if large else str(getattr(document, "title", None) or "")
    return title, str(getattr(document, "text", None) or "")


def _html_title(html: str) -> str:
    """The `<title>` of a document, looked for near its start only."""
    match = _TITLE.search(html, 0, _TITLE_SEARCH_CHARS)
    return htmllib.unescape(match.group(1)) if match else ""


def _lxml_fallback(html: str) -> tuple[str, str]:
    """Visible text of the whole document, with one line per block element."""
    try:
        root = lxml_html.document_fromstring(_XML_DECLARATION.sub("", html, count=1))
        title = root.findtext(".//title") or ""
        etree.strip_elements(root, *_NOT_CONTENT, etree.Comment, etree.ProcessingInstruction, with_tail=False)
        for element in root.iter():
            if isinstance(element.tag, str) and element.tag.lower() in _BLOCKS:
                element.tail = "\n" + (element.tail or "")
        return title, str(root.text_content())
    except Exception:  # empty or unparseable document
        logger.debug("lxml fallback extraction failed", exc_info=True)
        return "", ""


def _clean(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
