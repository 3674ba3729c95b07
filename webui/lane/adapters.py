"""LoRA adapters on the lane's model: the set a call asks for, and nothing else, active.

Adapters load once through diffusers' LoRA loader (`load_lora_weights`, PEFT underneath) and
stay loaded for reuse, the least recently used unloaded beyond a bound. Before every call the
lane says which set and strengths the call takes (`use`): `set_adapters` for a set,
`disable_lora` for none, so an adapter of one job can never act on the next job's images (the
classic multi-user leak). Calls are grouped by their set (webui/lane/work.py: Job.key), so the
images of one call share it. Runs on the lane's thread only.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from webui.limits import MAX_LORAS
from webui.loras import LoraLibrary

logger = logging.getLogger(__name__)

LoraSet = Sequence[Sequence[Any]]  # (name, strength, sha256) per LoRA, as the request has them


class Adapters:
    """The adapters loaded on one pipeline (shared by every kind of call: one transformer)."""

    def __init__(self, pipe: Any, library: LoraLibrary, kept: int) -> None:
        self.pipe, self.library = pipe, library
        self.kept = max(kept, MAX_LORAS)  # never unload one of the set being made active
        self._loaded: OrderedDict[str, None] = OrderedDict()  # adapter names, least recent first
        self._active: tuple[tuple[str, float], ...] = ()  # (adapter, strength) active now

    def use(self, loras: LoraSet) -> None:
        """Make `loras` (possibly none) the only active adapters, at their strengths."""
        if not loras:
            if self._active:
                self.pipe.disable_lora()
                self._active = ()
            return
        names = [self._load(name, digest) for name, _, digest in loras]
        wanted = tuple(zip(names, (float(strength) for _, strength, _ in loras), strict=True))
        if wanted == self._active:  # the previous call's set: nothing to change
            return
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, adapter_weights=[strength for _, strength in wanted])
        self._active = wanted

    def _load(self, name: str, digest: str) -> str:
        """The adapter of this file version, loaded if it is not; RequestError when the file is
        gone or changed since the job was accepted."""
        adapter = f"{re.sub(r'[^A-Za-z0-9_]', '_', name)}_{digest[:12]}"
        if adapter in self._loaded:
            self._loaded.move_to_end(adapter)
            return adapter
        path = self.library.path_of(name, digest)  # RequestError when that version is not here
        self.pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter)
        self._loaded[adapter] = None
        logger.info("Loaded LoRA %s (%s) as adapter %s", name, digest[:12], adapter)
        while len(self._loaded) > self.kept:
            old, _ = self._loaded.popitem(last=False)
            self.pipe.delete_adapters(old)
            self._active = ()  # diffusers' deleting may change what is active: set it again next
            logger.info("Unloaded LoRA adapter %s (least recently used)", old)
        return adapter
