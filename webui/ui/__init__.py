"""The Gradio page: `layout.py` lays it out and wires it, `form.py` builds the form,
`page.py` holds its handlers, `text.py` its wording and values, `page.js` its keyboard
shortcut and tab title."""

from webui.ui.layout import PAGE_SCRIPT, create_demo
from webui.ui.page import Page

__all__ = ["PAGE_SCRIPT", "Page", "create_demo"]
