"""Main-text extraction from HTML: trafilatura first, a plain lxml text dump when it finds nothing.

Pages are hostile and often broken, so nothing here raises: the worst case is an empty string.
"""

from __future__ import annotations

import logging
import re
from typing import Final

import trafilatura
from lxml import etree  # type: ignore[import-untyped]  # no stubs installed
from lxml import html as lxml_html

logger = logging.getLogger(__name__)

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
    if not text or not title:
        fallback_title, fallback_text = _lxml_fallback(html)
        title = title or fallback_title
        text = text or fallback_text
    return _clean(title).replace("\n", " "), _clean(text)


def _trafilatura(html: str, *, url: str) -> tuple[str, str]:
    try:
        document = trafilatura.bare_extraction(
            html, url=url, with_metadata=True, include_comments=False, include_tables=True
        )
    except Exception:  # trafilatura on hostile markup: log and fall back, never fail the fetch
        logger.debug("trafilatura failed on %s", url, exc_info=True)
        return "", ""
    if document is None:
        return "", ""
    return str(getattr(document, "title", None) or ""), str(getattr(document, "text", None) or "")


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
