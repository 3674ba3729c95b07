"""Entry point of the WebUI: `python -m webui [--setting value ...]`.

Exit status: 1 when the port is taken or the model cannot be loaded, 2 for a bad setting.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from webui.settings import SettingsError, add_arguments, from_namespace

logger = logging.getLogger("webui")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webui", description="Z-Image-Turbo team WebUI.", allow_abbrev=False
    )
    add_arguments(parser)
    try:
        settings = from_namespace(parser.parse_args(argv), os.environ)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    # Heavy imports after the settings check, so a typo fails in a blink.
    from webui.engine import Engine
    from webui.loading import ModelLoadError, load_model
    from webui.log import configure_logging
    from webui.server import PortInUseError, check_port_free, serve

    configure_logging(settings.log_level)
    try:
        check_port_free(settings.host, settings.port)
        model = load_model(settings)
    except (PortInUseError, ModelLoadError) as exc:
        logger.error("%s", exc)
        return 1
    serve(Engine(model, settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
