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
    from webui.loading import ModelLoader, TokenizerLoader
    from webui.server import Backend

logger = logging.getLogger("webui")


def main(
    argv: Sequence[str] | None = None,
    load_model: ModelLoader | None = None,
    load_tokenizer: TokenizerLoader | None = None,
) -> int:
    """Serve until stopped; the exit status as above. What loads the model (embedded mode) and
    the tokenizer (the web host of distributed mode) is webui.loading's, imported once the
    settings are good, unless a test or tool passes its own (tests/faults.py adds hooks)."""
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
    from webui.models import is_demo_name
    from webui.preflight import ModelLoadError, PortInUseError, check_port_free, local_model_folder

    configure_logging(settings.log_level)
    try:
        # Before the heavy imports: a typo, a taken port or a wrong folder fails in a blink.
        check_port_free(settings.host, settings.port)
        if settings.model != "auto" and not is_demo_name(settings.model):
            local_model_folder(settings.model)
        from webui.server import serve

        if settings.broker_url:
            backend = distributed_backend(settings, load_tokenizer)
        else:
            backend = embedded_backend(settings, load_model)
    except PortInUseError as exc:
        logger.error("%s", exc)
        return 1
    except ModelLoadError as exc:
        logger.error("%s", exc)
        return 3
    serve(backend, settings)
    return 0


def embedded_backend(settings: Settings, load_model: ModelLoader | None) -> Backend:
    """One process: the model loaded here, jobs run on its lane."""
    from webui import loading
    from webui.engine import Engine
    from webui.lane.watchdog import exit_for_supervisor
    from webui.server import embedded

    model = (load_model or loading.load_model)(settings)
    return embedded(Engine(model, settings, on_stuck=exit_for_supervisor))


def distributed_backend(settings: Settings, load_tokenizer: TokenizerLoader | None) -> Backend:
    """The web host of distributed mode: the tokenizer only; GPU workers make the images."""
    from webui import loading
    from webui.distributed.runner import CeleryRunner
    from webui.loras import LoraLibrary
    from webui.server import Backend
    from webui.validation import Validator

    tokenizer, label, dtype, is_demo = (load_tokenizer or loading.load_tokenizer)(settings)
    runner = CeleryRunner(settings, label, dtype)
    logger.info("Distributed mode: jobs go to the workers serving %s through %s", runner.model, runner.broker)
    loras = LoraLibrary(settings.lora_path, loading.transformer_shapes(settings))  # checked at submit
    return Backend(runner, Validator(tokenizer, settings).validate, label, is_demo, False, loras)


if __name__ == "__main__":
    sys.exit(main())
