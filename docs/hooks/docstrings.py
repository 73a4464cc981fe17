"""Griffe extension for the API reference: mmssl's docstrings as the site should show them.

Two things, neither of which touches the source:

- a class attribute's trailing ``# comment`` becomes its docstring. mmssl's configs say what
  each field is in a comment on the same line (house style), e.g.
  ``lr: PositiveFloat = 1e-3  # Adam learning rate (MMRec learning_rate)``; Python keeps no such
  comment, so without this the reference would list the settings without their meaning;
- Sphinx roles (``:class:`~mmssl.data.Dataset```, ``:func:`evaluate```) become inline code
  (``Dataset``, ``evaluate``), since the docstrings are rendered as Markdown.
"""

from __future__ import annotations

import io
import re
import tokenize

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def trailing_comment(line: str) -> str | None:
    """The text of the comment that ends ``line`` (``#`` inside strings ignored), or None."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    comments = [t.string for t in tokens if t.type == tokenize.COMMENT]
    if not comments:
        return None
    text = comments[-1].lstrip("#").strip()
    if not text or text.startswith(("noqa", "type:")):
        return None
    return text


def plain_roles(text: str) -> str:
    """``:class:`~a.b.C``` -> ```C```, ``:func:`a.f``` -> ```a.f```."""
    return ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`",
                    text)


class MmsslDocstrings(griffe.Extension):
    """Field comments as attribute docstrings; Sphinx roles as inline code."""

    def on_attribute_instance(self, *, node, attr: griffe.Attribute, agent, **kwargs) -> None:
        """Give a class attribute without a docstring the comment that ends its line."""
        if attr.docstring is not None or not attr.parent or not attr.parent.is_class:
            return
        if attr.endlineno is None:
            return
        try:
            lines = attr.parent.module.lines
        except (AttributeError, OSError):
            return
        text = trailing_comment(lines[attr.endlineno - 1].strip())
        if text:
            attr.docstring = griffe.Docstring(text, lineno=attr.endlineno, parent=attr)

    def on_object(self, *, obj: griffe.Object, loader, **kwargs) -> None:
        """Rewrite the roles of every loaded docstring."""
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = plain_roles(obj.docstring.value)
