"""Main-text extraction from HTML: trafilatura first, a plain lxml text dump when it finds nothing.

Pages are hostile and often broken, so nothing here raises: the worst case is an empty string.

Callers run it in a thread, which is not enough on its own: trafilatura's metadata pass makes single
regex calls over the whole document (the GIL held for 0.2 s each on 5 MB), and walking a large tree
allocates so many objects that the garbage collector pauses every thread for 0.3 s and more; either
starves the event loop (and the lease heartbeat) in the other thread. So the work is bounded: a
document up to `FULL_EXTRACTION_CHARS` gets trafilatura's full treatment; a larger one loses its
`<script>`/`<style>` blocks, skips the metadata pass (the title comes from `<title>`) and the fallback
extractors, and only its first `MAX_EXTRACTED_HTML_CHARS` are extracted, which the text then says. The
model is shown at most `fetch_max_chars` (200,000 at most) of the text anyway.
"""

from __future__ import annotations

import html as htmllib
import logging
import re
from typing import Final

from lxml import etree  # type: ignore[import-untyped]  # no stubs installed
from lxml import html as lxml_html

logger = logging.getLogger(__name__)

FULL_EXTRACTION_CHARS: Final = 262_144
MAX_EXTRACTED_HTML_CHARS: Final = 1_000_000
_TITLE: Final = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TITLE_SEARCH_CHARS: Final = 65_536
_NOT_TEXT_OPENING: Final = re.compile(r"<(script|style|svg|noscript|template)\b", re.IGNORECASE)
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
    if len(html) <= FULL_EXTRACTION_CHARS:
        title, text = _trafilatura(html, url=url, full=True)
        if not text or not title:
            fallback_title, fallback_text = _lxml_fallback(html)
            title = title or fallback_title
            text = text or fallback_text
        return _clean(title).replace("\n", " "), _clean(text)
    title = _html_title(html)
    body = _without_scripts(html)
    cut = len(body) > MAX_EXTRACTED_HTML_CHARS
    if cut:
        end = body.rfind("<", 0, MAX_EXTRACTED_HTML_CHARS)
        body = body[: end if end > 0 else MAX_EXTRACTED_HTML_CHARS]
    _, text = _trafilatura(body, url=url, full=False)
    if not text:
        text = _lxml_fallback(body)[1]
    text = _clean(text)
    if cut:
        text += f"\n[... only the first {MAX_EXTRACTED_HTML_CHARS:,} characters of this page's HTML were read ...]"
    return _clean(title).replace("\n", " "), text


def _trafilatura(html: str, *, url: str, full: bool) -> tuple[str, str]:
    """`full`: with the metadata pass (the title) and the fallback extractors trafilatura compares against."""
    import trafilatura  # here: a tenth of a second to import, which a process that fetches no page never pays

    try:
        document = trafilatura.bare_extraction(
            html, url=url, with_metadata=full, fast=not full, include_comments=False, include_tables=True
        )
    except Exception:  # trafilatura on hostile markup: log and fall back, never fail the fetch
        logger.debug("trafilatura failed on %s", url, exc_info=True)
        return "", ""
    if document is None:
        return "", ""
    return str(getattr(document, "title", None) or ""), str(getattr(document, "text", None) or "")


def _html_title(html: str) -> str:
    """The `<title>` of a document, looked for near its start only."""
    match = _TITLE.search(html, 0, _TITLE_SEARCH_CHARS)
    return htmllib.unescape(match.group(1)) if match else ""


def _without_scripts(html: str) -> str:
    """`html` without its script, style, svg, noscript and template elements (one linear pass; an element
    never closed runs to the end)."""
    parts: list[str] = []
    position = 0
    while (opening := _NOT_TEXT_OPENING.search(html, position)) is not None:
        parts.append(html[position : opening.start()])
        closing = _closing(html, opening.group(1), opening.end())
        if closing < 0:
            return "".join(parts)
        position = closing
    parts.append(html[position:])
    return "".join(parts)


def _closing(html: str, tag: str, start: int) -> int:
    """Where the text after `</tag ...>` starts, or -1."""
    match = re.compile(rf"</{tag}\s*>", re.IGNORECASE).search(html, start)
    return match.end() if match else -1


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
