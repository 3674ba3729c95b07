"""Checking a request against every limit before any work: it needs the tokenizer only.

The engine validates with it before running; a web host in distributed mode, which loads no
model, validates with it alone (webui/distributed/).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from typing import Any

from webui.limits import check_numbers, check_plain_text
from webui.request import GenerationRequest, RequestError
from webui.settings import MODEL_MAX_TOKENS, Settings
from webui.words import words

TOKEN_COUNTS_KEPT = 4096  # texts whose token count is remembered


class Validator:
    """Token counts and request limits, from the model's tokenizer."""

    def __init__(self, tokenizer: Any, settings: Settings) -> None:
        # A copy of its own: the text encoder's calls set padding and truncation on the shared
        # one, and a fast tokenizer changed by one thread fails in another ("Already borrowed").
        self.tokenizer, self.settings = copy.deepcopy(tokenizer), settings
        self._lock = threading.Lock()
        self._token_counts: OrderedDict[str, int] = OrderedDict()

    def count_tokens(self, prompt: str) -> int:
        """Tokens the text encoder sees for `prompt`, chat template included.

        Remembered for recent texts: a job's prompts are counted when it is accepted and
        again, for its caption buckets, when it runs."""
        with self._lock:
            if prompt in self._token_counts:
                self._token_counts.move_to_end(prompt)
                return self._token_counts[prompt]
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=True,
        )
        count = len(self.tokenizer(text)["input_ids"])
        with self._lock:
            self._token_counts[prompt] = count
            while len(self._token_counts) > TOKEN_COUNTS_KEPT:
                self._token_counts.popitem(last=False)
        return count

    def validate(self, request: GenerationRequest) -> dict[str, int]:
        """Raise RequestError if the request breaks a limit; does no GPU work.

        Returns the token count of each distinct text checked (chat template included).
        """
        check_numbers(request, self.settings)
        limit = min(self.settings.max_prompt_tokens, MODEL_MAX_TOKENS)
        # The style alone first, so that a fault in it is named as the style's.
        texts = [(words("name_style"), request.style)] if request.style else []
        texts += [(words("name_prompt", n=i), p) for i, p in enumerate(request.prompts, 1)]
        # Checked even at guidance 0, where the model ignores it: it is stored and shown all the same.
        if request.negative_prompt != "":
            texts.append((words("name_negative"), request.negative_prompt))
        counts: dict[str, int] = {}
        for name, text in texts:
            if not isinstance(text, str):
                raise RequestError("not_text", name=name, kind=type(text).__name__)
            if name.key == "name_prompt":
                if not text.strip():
                    raise RequestError("empty", name=name)
                text = request.text_of(text)  # what the model reads: limits hold for it
            check_plain_text(name, text, limit)
            if text not in counts:
                counts[text] = self.count_tokens(text)
            tokens = counts[text]
            if tokens > limit:
                raise RequestError(
                    "too_many_tokens", name=name, tokens=tokens, limit=limit, over=tokens - limit
                )
        return counts
