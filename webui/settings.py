"""Server and engine settings: one table, read once from CLI flags and the environment.

Every field of `Settings` is a setting. Its flag is `--name-with-dashes`, its environment
variable `ZIMAGE_NAME_IN_CAPS`, and a flag wins over the environment. The help text in the
field metadata is what `--help` prints and what the README documents (a test keeps the two
in step). `Settings.validate()` runs at start-up and says which setting to change.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "ZIMAGE_"

# Request defaults and hard limits of the model, in one place.
HUB_MODEL_ID = "Tongyi-MAI/Z-Image-Turbo"
FULL_RANDOM = "full-random"  # the real architecture at full size with random weights (benchmarks)
DEFAULT_STEPS = 8  # 8 transformer forwards since diffusers 0.39's schedule; not the card's 9
DEFAULT_GUIDANCE = 0.0  # Turbo is distilled without CFG; > 0 doubles the work
DEFAULT_SIZE = 1024
SIZE_MULTIPLE = 16  # VAE 8x downsampling times the transformer's 2x2 patches
MODEL_MAX_TOKENS = 512  # the pipeline truncates prompts beyond this, after the chat template
MAX_GUIDANCE = 20.0
# Longest prompt in characters, checked before tokenizing (32 per token of the model's limit):
# no real 512-token prompt is longer, and text sent to tie the server up is refused unread.
MAX_PROMPT_CHARS = 32 * MODEL_MAX_TOKENS
MAX_SEED = 2**53 - 1  # largest integer a browser's JSON number holds exactly
SEED_PER_IMAGE = "per-image"  # image k of a request gets seed + k
SEED_PER_VARIANT = "per-variant"  # variant j of every prompt gets seed + j: sets differ only by prompt
SEED_POLICIES = (SEED_PER_IMAGE, SEED_PER_VARIANT)
RANDOM_SEED_RANGE = 2**32  # seed -1 draws a base seed below this: short enough to read back

DTYPES = ("auto", "bf16", "fp32")
QUANTIZE = ("none", "fp8")
ATTENTION_BACKENDS = (
    "default",
    "native",
    "flash",
    "flash_varlen",
    "_flash_3",
    "_flash_varlen_3",
    "_native_cudnn",
    "_native_efficient",
    "_native_flash",
    "_native_math",
    "flex",
    "sage",
    "sage_varlen",
    "xformers",
    "flash_hub",
    "flash_varlen_hub",
    "_flash_3_hub",
)


class SettingsError(ValueError):
    """A setting has a value the server cannot start with; the message names the fix."""


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Everything an operator can set. Read with `Settings.from_sources()`."""

    model: str = _setting(
        "auto",
        f"`{HUB_MODEL_ID}` (or another hub id, such as `Tongyi-MAI/Z-Image` for base), a local "
        "folder in diffusers layout, or `demo` for the built-in tiny model (`demo-base`: its "
        "stand-in for Z-Image base). `auto`: the hub model when a CUDA GPU is present, "
        f"else `demo`. `{FULL_RANDOM}`: the real architecture with random weights made on the "
        "device, for benchmarks without a download.",
    )
    device: str = _setting("auto", "`auto`, `cpu`, `cuda` or `cuda:N`. `auto`: `cuda` when available.")
    dtype: str = _setting(
        "auto",
        "`auto`, `bf16` or `fp32`. `auto`: bf16 on GPU, fp32 on CPU. fp16 is refused: "
        "Z-Image gives black images in fp16.",
    )
    attention_backend: str = _setting(
        "default",
        "diffusers attention backend for the transformer, e.g. `native`, `flash`, "
        "`_flash_3`, `flash_varlen`. `default`: PyTorch SDPA.",
    )
    cpu_offload: bool = _setting(
        False,
        "Keep weights in CPU memory and move each model to the GPU while it runs "
        "(`enable_model_cpu_offload`); for 16 GB cards. Needs a CUDA device.",
    )
    compile: bool = _setting(
        False,
        "Compile the transformer's repeated blocks with torch.compile (dynamic sizes). Start-up "
        "then warms it up with three calls at 1024x1024 (the compiling happens there), after "
        "which no request compiles again, whatever its size, batch or prompt lengths.",
    )
    quantize: str = _setting(
        "none",
        "`none` or `fp8`: the transformer's linear layers in float8 with dynamic activation "
        "scales (torchao; Hopper or Ada GPUs). `python -m webui.bench` measures its speed and "
        "how far the pixels move.",
    )
    tf32: bool = _setting(
        True, "Allow TF32 for float32 matrix products and convolutions on the GPU (no effect on bf16)."
    )
    vae_tiling_above: float = _setting(
        1.5,
        "Images larger than this many megapixels are decoded in overlapping 1024-pixel tiles, "
        "one image at a time (2048x2048 is 4.2), so that decoding needs no more memory than a "
        "1024x1024 image does. 0: always.",
    )
    max_batch_size: int = _setting(
        4, "Most images in one pipeline call (one forward); larger requests run as several calls."
    )
    cross_batching: bool = _setting(
        True,
        "Pack images of different users' requests with the same size, steps and guidance "
        "into shared pipeline calls. Off: requests run strictly one after the other.",
    )
    max_prompts: int = _setting(100, "Most prompts in one request.")
    max_images: int = _setting(200, "Most images in one request (prompts x images per prompt).")
    max_input_images: int = _setting(
        16, "Most input images (products or references) in one request; each runs the whole prompt list."
    )
    max_input_mb: float = _setting(
        20.0, "Largest input image file in megabytes (PNG, JPEG or WebP); a larger one is refused unread."
    )
    max_input_pixels: int = _setting(
        40_000_000,
        "Most pixels an input image may have (width x height, read from its header before any "
        "decoding): larger ones, decompression bombs included, are refused.",
    )
    max_prompt_tokens: int = _setting(
        MODEL_MAX_TOKENS,
        f"Longest prompt in tokens, counted after the chat template (at most "
        f"{MODEL_MAX_TOKENS}: the model's limit).",
    )
    min_size: int = _setting(256, f"Smallest width or height in pixels (a multiple of {SIZE_MULTIPLE}).")
    max_size: int = _setting(2048, f"Largest width or height in pixels (a multiple of {SIZE_MULTIPLE}).")
    min_steps: int = _setting(1, "Fewest inference steps a request may ask for.")
    max_steps: int = _setting(50, "Most inference steps a request may ask for.")
    output_dir: Path = _setting(Path("outputs"), "Folder where generated PNGs are written.")
    lora_dir: str = _setting(
        "",
        "Folder of LoRA files (`.safetensors`); a job names each by its file name without the "
        "suffix. Empty: `loras` next to the output folder. Files added or removed are seen at once.",
    )
    max_lora_mb: float = _setting(
        1024.0,
        "Largest LoRA file an admin may add from the page, in megabytes (everyone else's uploads "
        "keep the input image limit).",
    )
    max_loras_loaded: int = _setting(
        8,
        "LoRA adapters kept loaded on the model for reuse; the least recently used beyond this are unloaded.",
    )
    cache_dir: Path = _setting(
        Path(".cache"),
        "Folder for the built-in demo model (built there once). Hub weights go "
        "to the Hugging Face cache (`HF_HOME`).",
    )
    log_level: str = _setting("INFO", "`DEBUG`, `INFO`, `WARNING` or `ERROR`.")
    host: str = _setting(
        "127.0.0.1", "Address the web server listens on. `0.0.0.0` opens it to your network."
    )
    port: int = _setting(7860, "Port of the web server.")
    metrics_port: int = _setting(
        0,
        "A port of its own for Prometheus' GET /metrics, without the login (0: none; /metrics is "
        "then on the server's port, behind the login: a person's API key as a bearer token).",
    )
    metrics_host: str = _setting("127.0.0.1", "Address the metrics port listens on.")
    queue_size: int = _setting(
        32,
        "Most jobs waiting in the queue (accepted, not yet running); one more is refused with a "
        "message naming this limit.",
    )
    max_jobs_per_user: int = _setting(
        8,
        "Most jobs one person may have queued or running at once (per login; without a login, "
        "per browser or script session).",
    )
    state_dir: str = _setting(
        "",
        "Folder for the job database (SQLite). Empty: `state` next to the output folder. Keep it on "
        "a local disk (SQLite's WAL needs one); it can be rebuilt from the manifests.",
    )
    max_threads: int = _setting(16, "Most worker threads the web server runs at once.")
    retention_days: int = _setting(
        0,
        "Delete finished jobs (their folder of images and manifest, and their record) older than "
        "this many days, at start-up and then hourly; 0 keeps everything.",
    )
    stall_timeout: int = _setting(
        300,
        "Seconds a pipeline call may go without finishing a step. Then its jobs fail with "
        "a message and new ones are refused; if the call is still stuck min(30, this) seconds "
        "later, the process exits with status 70 so that Supervisor starts a fresh one.",
    )
    crash_resumes: int = _setting(
        3,
        "Times a job is taken up again after the process died while running it; if it is "
        "running when the process dies once more, it fails with a message (it may be what "
        "brings the process down) and the jobs behind it go on.",
    )
    broker_url: str = _setting(
        "",
        "Redis URL of the Celery broker, e.g. `redis://:PASSWORD@HOST:6379/0` (`rediss://` for "
        "TLS). Set: distributed mode; the web host loads no model and GPU workers "
        "(`./launch.sh worker`) make the images. Empty: one process does everything.",
    )
    workers: int = _setting(
        0,
        "GPU worker processes `./launch.sh worker` starts on this host. 0: one per visible GPU "
        "(one on the CPU when there is none).",
    )
    task_timeout: int = _setting(
        600,
        "Distributed mode: seconds a worker may hold a task (at most one call's worth of images) "
        "before Redis hands it to another worker, also how long a killed worker's task waits to be "
        "run again (Celery's visibility timeout). Keep it above the slowest task.",
    )
    auth_user: str = _setting("", "User name for the login page; set with the password to turn auth on.")
    auth_password: str = _setting(
        "", "Password for the login page. Prefer the environment: flags show up in `ps`."
    )
    run_history: bool = _setting(
        False,
        "Gradio's run-history page (/gradio_api/runs): it keeps every run in the browser and offers "
        "to send runs off the server. Off unless an admin turns it on.",
    )
    allowed_hosts: str = _setting(
        "",
        "More names the server may be reached by, comma-separated (`zimage.example.com`, "
        "`*.team.example`), beside its bind address, localhost, 127.0.0.1 and this machine's "
        "names and addresses. A request naming any other host in its `Host` header gets 400: "
        "this stops DNS rebinding.",
    )
    trusted_proxies: str = _setting(
        "",
        "Addresses of reverse proxies, comma-separated (`127.0.0.1` for nginx on this machine). "
        "Only requests from these have their `X-Forwarded-For` believed, for the client address "
        "that logins are limited by. Empty: no proxy, loopback included.",
    )
    max_request_mb: float = _setting(
        4.0,
        "Largest request body in megabytes; a larger one gets 413 before it is read. Uploads "
        "have their own limit.",
    )
    max_input_request_mb: float = _setting(
        100.0,
        "Largest body of an API request that carries input images (`POST /api/v1/jobs`, "
        "`/v1/images/edits`) in megabytes; base64 adds a third to each image.",
    )
    url_expiry_days: float = _setting(
        7.0,
        "Days a signed image URL (the API's `url` fields) keeps working. "
        "`python -m webui.keys rotate-url-key` ends every link at once.",
    )
    cache_max_age: int = _setting(
        86400,
        "Seconds an upload, or a file Gradio copied into its cache, is kept; they are deleted "
        "after that (checked every min(this, 600) seconds) and when the server stops.",
    )

    @property
    def state_path(self) -> Path:
        """Where the job database lives."""
        return Path(self.state_dir).expanduser() if self.state_dir else self.output_dir.parent / "state"

    @property
    def lora_path(self) -> Path:
        """Where the LoRA library is."""
        return Path(self.lora_dir).expanduser() if self.lora_dir else self.output_dir.parent / "loras"

    @property
    def extra_hosts(self) -> list[str]:
        return _items(self.allowed_hosts)

    @property
    def proxies(self) -> list[str]:
        return _items(self.trusted_proxies)

    @property
    def exposed(self) -> bool:
        """Listening beyond loopback: without a login, anyone who reaches the port can generate."""
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        return not loopback

    @classmethod
    def from_sources(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from flags (`argv`, no program name) over `environ`, validated."""
        parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        add_arguments(parser)
        namespace, rest = parser.parse_known_args(list(argv or []))
        if rest:
            raise SettingsError(f"Unknown argument(s): {' '.join(rest)}. See --help.")
        return from_namespace(namespace, os.environ if environ is None else environ)

    def validate(self) -> Settings:
        """Raise SettingsError naming the setting and the fix; return self when all is well."""
        for name in (
            "max_batch_size",
            "max_prompts",
            "max_images",
            "max_prompt_tokens",
            "min_steps",
            "queue_size",
            "max_jobs_per_user",
            "max_threads",
            "stall_timeout",
            "crash_resumes",
            "task_timeout",
            "cache_max_age",
            "max_input_images",
            "max_input_pixels",
            "max_loras_loaded",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{_names(name)} must be at least 1 (got {getattr(self, name)}).")
        if self.max_prompt_tokens > MODEL_MAX_TOKENS:
            raise SettingsError(
                f"{_names('max_prompt_tokens')} must be at most {MODEL_MAX_TOKENS}, the model's "
                f"limit (got {self.max_prompt_tokens})."
            )
        for name in ("min_size", "max_size"):
            value = getattr(self, name)
            if value < SIZE_MULTIPLE or value % SIZE_MULTIPLE:
                raise SettingsError(
                    f"{_names(name)} must be a positive multiple of {SIZE_MULTIPLE} (got {value})."
                )
        if self.workers < 0:
            raise SettingsError(f"{_names('workers')} must be 0 (one per GPU) or more (got {self.workers}).")
        if self.broker_url and not re.match(r"rediss?://", self.broker_url):
            raise SettingsError(
                f"{_names('broker_url')} must be a redis:// or rediss:// URL "
                f"(got {hide_password(self.broker_url)})."
            )
        if self.retention_days < 0:
            raise SettingsError(
                f"{_names('retention_days')} must be 0 (keep everything) or more (got {self.retention_days})."
            )
        if self.min_size > self.max_size:
            raise SettingsError(
                f"{_names('min_size')} ({self.min_size}) must not exceed "
                f"{_names('max_size')} ({self.max_size})."
            )
        if self.min_steps > self.max_steps:
            raise SettingsError(
                f"{_names('min_steps')} ({self.min_steps}) must not exceed "
                f"{_names('max_steps')} ({self.max_steps})."
            )
        self._check_model_settings()
        self._check_server_settings()
        return self

    def _check_model_settings(self) -> None:
        if self.dtype in ("fp16", "float16", "half"):
            raise SettingsError(
                f"{_names('dtype')}={self.dtype} is refused: Z-Image-Turbo produces NaN/black "
                "images in fp16. Use bf16 on a GPU or fp32."
            )
        if self.dtype not in DTYPES:
            raise SettingsError(f"{_names('dtype')} must be one of {', '.join(DTYPES)} (got {self.dtype!r}).")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise SettingsError(
                f"{_names('device')} must be auto, cpu, cuda or cuda:N (got {self.device!r})."
            )
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise SettingsError(
                f"{_names('attention_backend')} {self.attention_backend!r} is not known; use one "
                f"of: {', '.join(ATTENTION_BACKENDS)}."
            )
        if self.cpu_offload and self.device == "cpu":
            raise SettingsError(
                f"{_names('cpu_offload')} needs a CUDA device; unset it or set "
                f"{_names('device')} to auto or cuda."
            )
        if self.quantize not in QUANTIZE:
            raise SettingsError(
                f"{_names('quantize')} must be one of {', '.join(QUANTIZE)} (got {self.quantize!r})."
            )
        if self.vae_tiling_above < 0:
            raise SettingsError(
                f"{_names('vae_tiling_above')} must be 0 or more (got {self.vae_tiling_above})."
            )
        if not self.model.strip():
            raise SettingsError(f"{_names('model')} is empty; use auto, demo, a hub id or a folder.")

    def _check_server_settings(self) -> None:
        if not 1 <= self.port <= 65535:
            raise SettingsError(f"{_names('port')} must be from 1 to 65535 (got {self.port}).")
        if not self.host.strip():
            raise SettingsError(f"{_names('host')} is empty; use 127.0.0.1 or 0.0.0.0.")
        if bool(self.auth_user) != bool(self.auth_password):
            raise SettingsError(
                f"Set both {env_name('auth_user')} and {env_name('auth_password')} to turn the "
                "login on, or neither."
            )
        positive = ("max_request_mb", "url_expiry_days", "max_input_mb", "max_input_request_mb")
        positive += ("max_lora_mb",)
        for name in positive:
            if not getattr(self, name) > 0:
                raise SettingsError(f"{_names(name)} must be above 0 (got {getattr(self, name)}).")
        for name in ("allowed_hosts", "trusted_proxies"):
            if any(" " in item for item in _items(getattr(self, name))):
                raise SettingsError(f"{_names(name)} is a comma-separated list without spaces in a name.")
        for proxy in self.proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise SettingsError(
                    f"{_names('trusted_proxies')}: {proxy!r} is not an IP address or network."
                ) from None
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(
                f"{_names('log_level')} must be DEBUG, INFO, WARNING or ERROR (got {self.log_level!r})."
            )


def _items(text: str) -> list[str]:
    """A comma-separated setting as its items."""
    return [item.strip() for item in text.split(",") if item.strip()]


def hide_password(url: str) -> str:
    """A URL with its password replaced, for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def setting_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings)]


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _names(name: str) -> str:
    return f"{env_name(name)} / {flag_name(name)}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting. Defaults stay None so the environment can fill them."""
    group = parser.add_argument_group("settings (each also read from ZIMAGE_<NAME>)")
    for f in dataclasses.fields(Settings):
        default_text = str(f.default).lower() if isinstance(f.default, bool) else f.default
        group.add_argument(
            flag_name(f.name),
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} [env {env_name(f.name)}; default {default_text}]",
        )


def from_namespace(namespace: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings from parsed flags, falling back to `environ`, then to the defaults."""
    known = {env_name(name) for name in setting_names()}
    for key in environ:
        if key.startswith(ENV_PREFIX) and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"
            raise SettingsError(f"Unknown setting {key}{hint}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = getattr(namespace, f.name, None)
        if raw is None:
            raw = environ.get(env_name(f.name))
        if raw is not None:
            values[f.name] = _convert(f.name, type(f.default), raw)
    return Settings(**values).validate()


def _convert(name: str, kind: type, raw: str) -> Any:
    text = raw.strip()
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{_names(name)} must be true or false (got {raw!r}).")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{_names(name)} must be a whole number (got {raw!r}).") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise SettingsError(f"{_names(name)} must be a number (got {raw!r}).") from None
    if issubclass(kind, Path):
        if not text:
            raise SettingsError(f"{_names(name)} is empty; give a folder path.")
        return Path(text).expanduser()
    return text
