"""`python -m tests.faults [worker]`: the real server (or, with `worker`, a real GPU worker of
distributed mode), with faults a test arms while it runs.

The faults go into the real model's modules as forward hooks once it has loaded; each one is
armed by a file in the folder named by $WEBUI_FAULTS:

- `hang`: a transformer forward blocks while the file exists (a stuck kernel, as the process
  sees it: no step finishes). Checked first, so a test can hang a call, then arm another fault
  and release it.
- `slow`: each transformer forward first sleeps the seconds in the file (a slow GPU).
- `raise`: the next transformer forward raises RuntimeError (one shot: the file is removed).
- `oom`: transformer forwards of more images than the number in the file raise
  torch.OutOfMemoryError (0: every forward), until the file is removed.
- `nan`: the next VAE decode returns NaN (one shot).
- `crash`: a transformer forward of images as wide as the number in the file (pixels) kills
  the process with SIGKILL, as a segfault or the kernel's out-of-memory killer would.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

import webui.loading
from webui.__main__ import main
from webui.settings import Settings

FAULTS = Path(os.environ["WEBUI_FAULTS"])


def before_forward(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
    images = len(args[0])  # the transformer takes a list of latents, one per image
    while (FAULTS / "hang").exists():
        time.sleep(0.05)
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
        raise torch.OutOfMemoryError("injected: CUDA out of memory")


def after_decode(module: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    if (FAULTS / "nan").exists():
        (FAULTS / "nan").unlink()
        return output * float("nan")
    return output


def load_with_faults(settings: Settings) -> webui.loading.LoadedModel:
    model = real_load_model(settings)
    model.pipe.transformer.register_forward_pre_hook(before_forward)
    model.pipe.vae.decoder.register_forward_hook(after_decode)
    return model


real_load_model = webui.loading.load_model
webui.loading.load_model = load_with_faults  # main() imports it from the module when it runs

if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        from webui.distributed.worker import main as worker_main

        sys.exit(worker_main(sys.argv[2:]))
    sys.exit(main())
