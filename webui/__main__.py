"""Entry point of the WebUI: `python -m webui [--setting value ...]`.

Exit status: 1 when the port is taken, 2 for a bad setting, 3 when the model cannot be
loaded, 70 after a pipeline call stalled for good (webui/lane/watchdog.py). Supervisor
restarts the app after any exit but 2 and 3, which a restart would not fix
(supervisor/webui.conf); the jobs it was running resume in the new process.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from webui.settings import Settings, SettingsError, add_arguments, from_namespace

if TYPE_CHECKING:
    from webui.server import Backend

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

    from webui.log import configure_logging
    from webui.preflight import ModelLoadError, PortInUseError, check_port_free, local_model_folder
    from webui.settings import FULL_RANDOM

    configure_logging(settings.log_level)
    try:
        # Before the heavy imports: a typo, a taken port or a wrong folder fails in a blink.
        check_port_free(settings.host, settings.port)
        if settings.model not in ("auto", "demo", FULL_RANDOM):
            local_model_folder(settings.model)
        from webui.server import serve

        backend = distributed_backend(settings) if settings.broker_url else embedded_backend(settings)
    except PortInUseError as exc:
        logger.error("%s", exc)
        return 1
    except ModelLoadError as exc:
        logger.error("%s", exc)
        return 3
    serve(backend, settings)
    return 0


def embedded_backend(settings: Settings) -> Backend:
    """One process: the model loaded here, jobs run on its lane."""
    from webui.engine import Engine
    from webui.loading import load_model
    from webui.server import embedded

    return embedded(Engine(load_model(settings), settings, on_stuck=exit_for_supervisor))


def distributed_backend(settings: Settings) -> Backend:
    """The web host of distributed mode: the tokenizer only; GPU workers make the images."""
    from webui.distributed.broker import model_key
    from webui.distributed.runner import CeleryRunner
    from webui.loading import load_tokenizer
    from webui.server import Backend
    from webui.validation import Validator

    tokenizer, label, dtype, is_demo = load_tokenizer(settings)
    runner = CeleryRunner(settings, model_key(label, dtype))
    logger.info("Distributed mode: jobs go to the workers serving %s through %s", runner.model, runner.broker)
    return Backend(runner, Validator(tokenizer, settings).validate, label, is_demo, local=False)


EXIT_STALLED = 70  # EX_SOFTWARE: a pipeline call stalled and never came back


def exit_for_supervisor() -> None:
    """A stalled call holds the device and cannot be interrupted: only a fresh process frees
    it. Exit at once (exit() would wait on the stuck thread); Supervisor starts a new one,
    which resumes the jobs."""
    logger.critical("Exiting with status %d so that Supervisor starts a fresh process", EXIT_STALLED)
    logging.shutdown()  # flush the log: os._exit skips it
    os._exit(EXIT_STALLED)


if __name__ == "__main__":
    sys.exit(main())
