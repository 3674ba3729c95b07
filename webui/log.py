"""Logging, configured once by each entry point (never at import)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, stream: TextIO = sys.stdout) -> None:
    """Send every logger's records to `stream` (stdout suits Supervisor's log capture)."""
    logging.basicConfig(level=level.upper(), format=FORMAT, stream=stream, force=True)
