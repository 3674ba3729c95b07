"""The full-size benchmark: `python -m webui.bench` (webui/bench/__main__.py)."""
