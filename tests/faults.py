"""`python -m tests.faults [worker]`: the real server (or, with `worker`, a real GPU worker of
distributed mode), with faults a test arms while it runs.

The faults go into the real model's modules as forward hooks once it has loaded; each one is
armed by a file in the folder named by $WEBUI_FAULTS:

- `hang`: a transformer forward blocks while the file exists (a stuck kernel, as the process
  sees it: no step finishes). Checked first, so a test can hang a call, then arm another fault
  and release it.
- `hold`: once the file exists, the forwards after the first N (the number in the file) block
  until it is removed: a call caught at a known step, however fast the machine.
- `slow`: each transformer forward first sleeps the seconds in the file (a slow GPU).
- `raise`: the next transformer forward raises RuntimeError (one shot: the file is removed).
- `oom`: transformer forwards of more images than the number in the file raise
  torch.OutOfMemoryError (0: every forward), until the file is removed.
- `nan`: the next VAE decode returns NaN (one shot).
- `crash`: a transformer forward of images as wide as the number in the file (pixels) kills
  the process with SIGKILL, as a segfault or the kernel's out-of-memory killer would.

- `panel_stream` (read once, at start): "S W": each page's Queue panel stream lasts S seconds
  and looks at the queue at least every W seconds (600 and 10 in use), so that a test sees the
  panel's timer renew its stream several times.

It also keeps a record: `most_in_flight` holds the most transformer forwards that ever ran at
once in the process (1 while every call waits for the one before it).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webui.__main__ import main

if TYPE_CHECKING:  # imported when the model loads, as `python -m webui` does: a bad setting fails fast
    import torch

    from webui.loading import LoadedModel
    from webui.settings import Settings

FAULTS = Path(os.environ["WEBUI_FAULTS"])


_in_flight, _most_in_flight, _counting = 0, 0, threading.Lock()
_held: tuple[tuple[int, int], int] = ((0, 0), 0)  # (the `hold` file armed, forwards since)


def hold() -> None:
    global _held
    armed = FAULTS / "hold"
    try:
        info, limit = armed.stat(), int(armed.read_text())
    except FileNotFoundError:  # not armed, or just released
        return
    file, counted = _held
    if file != (info.st_ino, info.st_mtime_ns):  # armed anew: count from here
        file, counted = (info.st_ino, info.st_mtime_ns), 0
    _held = (file, counted + 1)
    if counted + 1 > limit:
        while armed.exists():
            time.sleep(0.05)


def before_forward(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
    global _in_flight, _most_in_flight
    images = len(args[0])  # the transformer takes a list of latents, one per image
    while (FAULTS / "hang").exists():
        time.sleep(0.05)
    hold()
    slow = FAULTS / "slow"
    if slow.exists():
        time.sleep(float(slow.read_text()))
    if (FAULTS / "raise").exists():
        (FAULTS / "raise").unlink()
        raise RuntimeError("injected fault in the transformer")
    crash = FAULTS / "crash"
    if crash.exists() and any(latent.shape[-1] * 8 == int(crash.read_text()) for latent in args[0]):
        os.kill(os.getpid(), signal.SIGKILL)
    oom = FAULTS / "oom"
    if oom.exists() and images > int(oom.read_text() or 0):
        import torch

        raise torch.OutOfMemoryError("injected: CUDA out of memory")
    with _counting:  # counted once the forward will run (not when a fault raised first)
        _in_flight += 1
        if _in_flight > _most_in_flight:
            _most_in_flight = _in_flight
            (FAULTS / "most_in_flight").write_text(str(_most_in_flight))


def after_forward(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
    global _in_flight
    with _counting:
        _in_flight -= 1


def after_decode(module: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    if (FAULTS / "nan").exists():
        (FAULTS / "nan").unlink()
        return output * float("nan")
    return output


def load_with_faults(settings: Settings) -> LoadedModel:
    from webui.loading import load_model

    model = load_model(settings)
    model.pipe.transformer.register_forward_pre_hook(before_forward)
    model.pipe.transformer.register_forward_hook(after_forward)
    model.pipe.vae.decoder.register_forward_hook(after_decode)
    return model


def short_panel_streams() -> None:
    armed = FAULTS / "panel_stream"
    if armed.exists():
        from webui.ui import queue  # before the page is built: its timer takes STREAM_S then

        queue.STREAM_S, queue.QUEUE_WAIT_S = map(float, armed.read_text().split())


if __name__ == "__main__":
    short_panel_streams()
    if sys.argv[1:2] == ["worker"]:
        from webui.distributed.worker import main as worker_main

        sys.exit(worker_main(sys.argv[2:], load_model=load_with_faults))
    sys.exit(main(load_model=load_with_faults))
