"""The Gradio page. It receives a ready engine and never loads a model itself."""

from __future__ import annotations

import logging

import gradio as gr

from webui.engine import Engine, GenerationRequest, GenerationResult, Progress, RequestError
from webui.prompts import parse_prompts
from webui.settings import DEFAULT_GUIDANCE, DEFAULT_SIZE, DEFAULT_STEPS, MAX_GUIDANCE, SIZE_MULTIPLE

logger = logging.getLogger(__name__)

DEMO_BANNER = (
    "**Demo model loaded.** This server runs the built-in tiny model with random weights "
    "(no CUDA GPU was found, or it was asked for): images are coloured noise. "
    "Set `ZIMAGE_MODEL=Tongyi-MAI/Z-Image-Turbo` on a GPU machine for real images."
)


def create_demo(engine: Engine) -> gr.Blocks:
    """The page, wired to `engine`. Queueing and launch are the caller's business."""
    settings = engine.settings
    with gr.Blocks(title="Z-Image-Turbo", analytics_enabled=False) as demo:
        gr.Markdown(f"## Z-Image-Turbo &nbsp; <small>{engine.model.label}</small>")
        if engine.model.is_demo:
            gr.Markdown(DEMO_BANNER, elem_id="demo-banner")
        prompts = gr.Textbox(
            label="Prompts: one per line (blank lines and lines starting with # are skipped)",
            lines=6,
            placeholder="a red leather sneaker on a white seamless background, studio lighting",
        )
        with gr.Row():
            images_per_prompt = gr.Slider(1, 16, value=1, step=1, label="Images per prompt")
            seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
            width = gr.Slider(settings.min_size, settings.max_size, value=DEFAULT_SIZE,
                              step=SIZE_MULTIPLE, label="Width")  # fmt: skip
            height = gr.Slider(settings.min_size, settings.max_size, value=DEFAULT_SIZE,
                               step=SIZE_MULTIPLE, label="Height")  # fmt: skip
            steps = gr.Slider(settings.min_steps, settings.max_steps, value=DEFAULT_STEPS, step=1,
                              label="Steps")  # fmt: skip
            guidance_scale = gr.Slider(0, MAX_GUIDANCE, value=DEFAULT_GUIDANCE, step=0.5,
                                       label="Guidance scale (0 for Turbo)")  # fmt: skip
        generate = gr.Button("Generate", variant="primary")
        summary = gr.Markdown()
        gallery = gr.Gallery(label="Results", format="png", columns=4, height="auto")

        def run(
            text: str, per_prompt: float, base_seed: float | None, w: float, h: float,
            n_steps: float, guidance: float, progress: gr.Progress = gr.Progress(),
        ) -> tuple[list[tuple[str, str]], str]:  # fmt: skip
            request = GenerationRequest(
                prompts=parse_prompts(text or ""),
                images_per_prompt=int(per_prompt),
                seed=-1 if base_seed is None else int(base_seed),
                width=int(w),
                height=int(h),
                steps=int(n_steps),
                guidance_scale=float(guidance),
            )

            def report(p: Progress) -> None:
                first, last = p.images_done + 1, p.images_done + p.chunk_images
                progress(p.fraction, desc=f"images {first}-{last} of {p.images_total}, "
                                          f"step {p.step} of {p.steps}")  # fmt: skip

            try:
                result = engine.generate(request, on_progress=report)
            except RequestError as exc:
                raise gr.Error(str(exc)) from None
            return _gallery(result), _summary(result)

        generate.click(
            run,
            inputs=[prompts, images_per_prompt, seed, width, height, steps, guidance_scale],
            outputs=[gallery, summary],
            api_name="generate",
            concurrency_id="gpu",
            concurrency_limit=1,
        )
    return demo


def _gallery(result: GenerationResult) -> list[tuple[str, str]]:
    return [(str(image.path), f"{image.prompt} (seed {image.seed})") for image in result.images]


def _summary(result: GenerationResult) -> str:
    rate = len(result.images) / result.elapsed_s if result.elapsed_s else 0.0
    seeds = f"seeds {result.seeds[0]}..{result.seeds[-1]}" if len(result.seeds) > 1 else f"seed {result.seeds[0]}"
    note = " (demo model)" if result.is_demo else ""
    return (f"{len(result.images)} images in {result.elapsed_s:.1f} s, {rate:.2f} images/s, "
            f"{seeds}{note}")  # fmt: skip
