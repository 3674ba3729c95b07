"""The Gradio page: `layout.py` lays it out and wires it, `page.py` holds its handlers,
`text.py` its wording and values."""

from webui.ui.layout import create_demo
from webui.ui.page import Page

__all__ = ["Page", "create_demo"]
