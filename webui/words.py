"""What the server tells people (errors, notices, progress, summaries), in English and
Simplified Chinese, by key.

An error or a line is made as `Words(key, values)` and said in a language only when shown:
the page says it in its browser's language (from Accept-Language, as Gradio's i18n picks the
labels' language from the browser's); scripts, logs and stored records get English. A value
that is itself `Words` (a field's name, an inner error) is said in the same language. The
page's fixed labels are in webui/ui/i18n.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ENGLISH, CHINESE = "en", "zh-CN"
Template = str | Callable[..., str]  # str.format text, or a function of the values (plurals)


def _s(n: int) -> str:
    return "s" * (n != 1)


_EN: dict[str, Template] = {
    # Names of fields, inside other messages.
    "name_box": "The prompt box",
    "name_style": "The style",
    "name_negative": "The negative prompt",
    "name_prompt": "Prompt {n}",
    "name_per_prompt": "Images per prompt",
    "name_width": "Width",
    "name_height": "Height",
    "name_steps": "Steps",
    "name_seed": "Seed",
    "name_guidance": "Guidance scale",
    # The request's limits.
    "no_prompts": "No prompts: type at least one prompt, one per line "
    "(blank lines and lines starting with # are skipped).",
    "too_many_prompts": "Too many prompts: {count} (the limit is {limit} per request).",
    "too_many_expanded": lambda count, lines, limit: (
        f"Too many prompts: {count}, from {lines} line{_s(lines)} with templates "
        f"(the limit is {limit} per request)."
    ),
    "too_many_images": "Too many images: {prompts} prompts x {per} = {count} (the limit is {limit} per request).",
    "not_multiple": "{name} must be a multiple of {multiple} (got {value}; try {lower} or {upper}).",
    "whole_range": "{name} must be a whole number from {low} to {high} (got {value!r}).",
    "whole_or_random": "{name} must be -1 (random) or a whole number from {low} to {high} (got {value!r}).",
    "not_whole": "{name} must be a whole number (got {value}).",
    "not_number": "{name} must be a number (got {value}).",
    "guidance_range": "Guidance scale must be between 0 and {high:g} (got {value!r}).",
    "seed_policy": "Seed policy must be one of {choices} (got {value!r}).",
    "box_too_long": "{name} holds {length:,} characters; the limit is {limit:,}.",
    "too_many_chars": "{name} is {length:,} characters long; the limit is {limit:,} characters "
    "(and {tokens} tokens).",
    "control_char": "{name} contains a control character or non-text byte (U+{code:04X} at "
    "character {position}); prompts must be plain text.",
    "not_text": "{name} must be text (got {kind}).",
    "empty": "{name} is empty.",
    "too_many_tokens": "{name} is {tokens} tokens long; the limit is {limit} tokens "
    "(counted with the chat template). Shorten it by {over} tokens.",
    "template_close": "'}}' at column {column} closes no '{{' (write \\}} for the character)",
    "template_open": "'{{' at column {column} is never closed (write \\{{ for the character)",
    "template_line": "Line {number}: {error}.",
    "template_deep": "braces nest deeper than {limit} levels at column {column}",
    "file_type": "Prompts come from a .txt or .csv file (got {name!r}).",
    "file_size": "The prompt file is {size:,} bytes; the limit is {limit:,}.",
    "file_encoding": "The prompt file is not UTF-8 text (byte {position}); save it as UTF-8.",
    # The queue and the server.
    "cannot_save": "Could not save the images: {reason} ({file}). "
    "An admin should check that {folder} is writable and has free space.",
    "restarting_submit": "The server is restarting; submit again in a minute.",
    "restarting_follow": "The server is restarting. Your job is kept and resumes when it is back: reload "
    "the page in a minute to follow it, or find it in History.",
    "queue_full": "The queue is full: {waiting} jobs are waiting, the most it holds ({setting}={size}). "
    "Try again when some have finished.",
    "per_person_cap": "You have {mine} jobs queued or running, the most one person may have "
    "({setting}={cap}). Wait for one to finish, or stop one.",
    "not_yours": "Job {job} is not yours to stop.",
    "plain": "{text}",  # words from elsewhere (an engine's failure), as they are
    "signed_in": "Signed in as **{name}**{admin} · [Log out](logout)",
    "admin_mark": " (admin)",
    "api_key_needed": "An API key is needed: send the header `Authorization: Bearer KEY` "
    "(an admin makes one with python -m webui.keys add NAME).",
    "shutting_down": "The server is shutting down; try again in a minute.",
    "stalled": "The GPU stopped making progress; the server is recovering or restarting. Try again in a minute.",
    "no_job": "No job {job} (deleted by retention?).",
    "no_job_id": "No job {job!r}.",
    "no_history_job": "No request {job!r} in the history (deleted by retention?).",
    "no_image": "No image {index} in job {job}.",
    "not_saved": "Image {index} of job {job} was not saved; only saved images take a star.",
    "job_failed": "The job failed.",
    "stopping": "Stopping after the current step; finished images are kept.",
    "stopping_job": "Stopping job {job} after the current step; finished images are kept.",
    "pick_first": "Pick an image in the results first.",
    "not_our_png": "This PNG carries no Z-Image WebUI parameters (or is not a PNG).",
    "png_field": "This PNG's parameters are not ours: its {field} has the wrong type.",
    "not_an_upload": "That file was not uploaded from this page; upload it again.",
    "link_expired": "This image link has expired or its key was changed; fetch the job again for a new link.",
    # Lines the page shows.
    "count": lambda n, per, images: f"{n} prompt{_s(n)} x {per} = **{images} image{_s(images)}**",
    "over_limit": " **over the limit** ({prompts} prompts, {images} images)",
    "made": lambda made: f"{made} image{_s(made)}",
    "stopped_made": "Stopped: {made} of {planned} images kept",
    "summary": "{head} in {elapsed:.1f} s, {rate:.2f} images/s, {seeds}{demo}{black} (job {job}{resumed})",
    "seed_range": "seeds {low}..{high}",
    "one_seed": "seed {low}",
    "demo_note": " (demo model)",
    "black": lambda n, seeds: (
        f". {n} image{_s(n)} came out black and {'were' if n != 1 else 'was'} not saved (seed{_s(n)} {seeds})"
    ),
    "resumed": ", resumed {n}x",
    "progress": lambda first, last, total, step, steps, on: (
        f"{'image ' + str(first) if first == last else f'images {first}-{last}'} of {total}, "
        f"step {step} of {steps}{' on ' + on if on else ''}"
    ),
    "starting": "{done} of {total} images, starting",
    "ahead": lambda n: f"{n} job{_s(n)} ahead of yours",
    "ahead_eta": "{ahead}, {eta}",
    "about_s": "about {n} s",
    "about_min": "about {n} min",
    "unknown": "unknown",
    "more_prompts": " (+{n} more)",
    "of": "{done} of {total}",
    "you": "you",
    "someone_else": "someone else",
    "owner_you": "{owner} (you)",
    "stop_cell": "■ Stop",
    "on": "{status} on {where}",
    "queued": "queued",
    "running": "running",
    "done": "done",
    "stopped": "stopped",
    "failed": "failed",
    "queue_columns": "#|status|owner|prompt|images|ETA|stop|job",
    "history_columns": "when (UTC)|status|prompts|images|size|user|request",
    # Fields of the request's table (webui/request.py), and inputs.
    "name_seed_policy": "Seed policy",
    "strength_steps": "Strength runs **{run} of {steps} steps** (the first ones are skipped: the image is their start).",
    "add_images": "Add images above (or paint a product) for this kind of job.",
    "count_inputs": lambda sources, n, per, images: (
        f"{sources} image{_s(sources)} x {n} prompt{_s(n)} x {per} = **{images} image{_s(images)}**"
    ),
    "name_prompts": "The prompt box",
    "name_images_per_prompt": "Images per prompt",
    "name_guidance_scale": "Guidance scale",
    "name_negative_prompt": "The negative prompt",
    "input_gone": "This PNG was made from input image {name}, which is no longer stored here: its "
    "settings are in the form, without the image; add it again to make the same picture.",
    "name_kind": "Kind",
    "name_strength": "Strength",
    "name_product_scale": "Product size",
    "name_position": "Position",
    "choice": "{name} must be one of {choices} (got {value!r}).",
    "number_range": "{name} must be a number from {low:g} to {high:g} (got {value!r}).",
    "inputs_for_text": 'Text-to-image jobs take no input images: choose "product in scene" or '
    '"variations", or remove the images.',
    "inputs_needed": "Kind {kind!r} needs at least one input image: add a product or reference image.",
    "too_many_inputs": "Too many input images: {count} (the limit is {limit} per request).",
    "strength_too_low": "Strength {strength:g} with {steps} steps runs no step: raise the strength "
    "to at least 1/{steps}, or add steps.",
    "input_too_big": "{name} is {mb:.1f} MB; the limit is {limit:g} MB per input image.",
    "not_an_image": "{name} is not an image that can be read: upload a PNG, JPEG or WebP file.",
    "input_format": "{name} is a {format} file; input images must be PNG, JPEG or WebP.",
    "input_pixels": "{name} is {width}x{height} pixels; the limit is {limit:,} pixels per input "
    "image (it also stops decompression bombs).",
    "name_cutout": "Cut-out",
    "too_many_loras": "Too many LoRAs: {count} (the limit is {limit} per job).",
    "lora_strength": "LoRA {name!r}: strength must be a number from -2 to 2 (got {value!r}).",
    "lora_missing": "No LoRA named {name!r} in the library ({folder}): name a file there without "
    "its .safetensors suffix.",
    "lora_not_safetensors": "LoRA {name!r} is not a safetensors file that can be read.",
    "lora_gone": "LoRA {name!r} is no longer in the library: the settings are loaded without it.",
    "lora_changed_since": "LoRA {name!r} has changed since these images were made: the file as it is now will be used.",
    "lora_library_empty": "No LoRA files yet: an admin puts `.safetensors` files in the LoRA folder (ZIMAGE_LORA_DIR).",
    "name_lora": "A LoRA",
    "lora_table_head": "| LoRA | size | trigger words or description |",
    "lora_file_name": "{name!r} is not a LoRA file name: use letters, digits, '.', '_', '-' or spaces, "
    "ending in .safetensors.",
    "lora_too_large": "LoRA {name!r} is {size:.0f} MB; the limit is {limit:g} MB (ZIMAGE_MAX_LORA_MB).",
    "lora_exists": "A LoRA named {name!r} is in the library already: rename the file, or have an admin "
    "remove the old one from the folder first (jobs queued with it would fail).",
    "lora_added": "Added LoRA {name!r} to the library.",
    "admins_only": "Only admins can do this.",
    "queue_paused": "**Paused** by {by} since {since}: the running call finishes, nothing new starts.",
    "pick_job_first": "Click a job's row in the queue first, then move it.",
    "bad_move": "A job moves to the front, up or down ({moves}), not {where!r}.",
    "model_not_served": "Model {model!r} is not served here. Models you can name: {served}.",
    "lora_not_sent": "Worker {worker} lacks LoRA {name!r} (SHA-256 {digest}...) and Redis holds no copy "
    "of it: put the file in the worker's LoRA folder, or submit the job again so the web host sends it.",
    "lora_no_fit": "LoRA {name!r} does not fit this model ({detail}): it was made for another model.",
    "lora_changed": "LoRA {name!r} changed or was replaced since the job was accepted: submit the job again.",
    "reused_invalid": "The reused images are not a list of [hash, name] pairs of stored inputs: reuse "
    "the job from History (or /history_reuse) again.",
    "painted_layers": "The painted photo has more than {limit} brush layers; paint on one layer.",
    "input_bomb": "{name} has more pixels than the limit of {limit:,} per input image (it also "
    "stops decompression bombs).",
    "no_transparency": "The image has no transparent pixels to tell the product from its "
    'background: upload a PNG with transparency, paint the product area, or choose "plain background".',
    "mask_size": "The mask is {mask} but the image is {image}: they must be the same size.",
    "nothing_to_keep": "Nothing to keep: no pixel of the image is marked as the product (paint the "
    "product, or use an image with an opaque product).",
    "nothing_to_generate": "Nothing to generate: every pixel is marked as the product, so no scene "
    "can be made around it (leave some background transparent or unpainted).",
    "scale_range": "Product size must be between 0.1 and 1 of the frame's shorter side (got {value!r}).",
    "not_base64": "{name} is not valid base64: send the file's bytes base64-encoded.",
    "mask_for_variation": "{name} has a mask, but variations change the whole image: send a mask "
    'only with kind "product".',
    "no_input": "Input image {digest}... is not stored on this server (removed by retention, or "
    "never uploaded here): upload it again.",
}

_ZH: dict[str, Template] = {
    "name_box": "提示词框",
    "name_style": "风格",
    "name_negative": "负面提示词",
    "name_prompt": "第 {n} 条提示词",
    "name_per_prompt": "每条提示词的图片数",
    "name_width": "宽度",
    "name_height": "高度",
    "name_steps": "步数",
    "name_seed": "种子",
    "name_guidance": "引导系数",
    "no_prompts": "没有提示词：请至少输入一条提示词，每行一条（空行和以 # 开头的行会被跳过）。",
    "too_many_prompts": "提示词过多：{count} 条（每个请求最多 {limit} 条）。",
    "too_many_expanded": "提示词过多：{lines} 行模板展开为 {count} 条（每个请求最多 {limit} 条）。",
    "too_many_images": "图片过多：{prompts} 条提示词 x {per} = {count} 张（每个请求最多 {limit} 张）。",
    "not_multiple": "{name}必须是 {multiple} 的倍数（当前为 {value}；可以试试 {lower} 或 {upper}）。",
    "whole_range": "{name}必须是 {low} 到 {high} 之间的整数（当前为 {value!r}）。",
    "whole_or_random": "{name}必须是 -1（随机）或 {low} 到 {high} 之间的整数（当前为 {value!r}）。",
    "not_whole": "{name}必须是整数（当前为 {value}）。",
    "not_number": "{name}必须是数字（当前为 {value}）。",
    "guidance_range": "引导系数必须在 0 到 {high:g} 之间（当前为 {value!r}）。",
    "seed_policy": "种子策略必须是 {choices} 之一（当前为 {value!r}）。",
    "box_too_long": "{name}有 {length:,} 个字符，上限为 {limit:,} 个。",
    "too_many_chars": "{name}长 {length:,} 个字符，上限为 {limit:,} 个字符（以及 {tokens} 个 token）。",
    "control_char": "{name}包含控制字符或非文本字节（第 {position} 个字符，U+{code:04X}）；提示词必须是纯文本。",
    "not_text": "{name}必须是文本（当前为 {kind}）。",
    "empty": "{name}为空。",
    "too_many_tokens": "{name}长 {tokens} 个 token，上限为 {limit} 个（按对话模板计算）。请缩短 {over} 个 token。",
    "template_close": "第 {column} 列的 '}}' 没有对应的 '{{'（要输入这个字符本身，请写 \\}}）",
    "template_open": "第 {column} 列的 '{{' 没有闭合（要输入这个字符本身，请写 \\{{）",
    "template_line": "第 {number} 行：{error}。",
    "template_deep": "第 {column} 列的花括号嵌套超过 {limit} 层",
    "file_type": "提示词需来自 .txt 或 .csv 文件（当前为 {name!r}）。",
    "file_size": "提示词文件有 {size:,} 字节，上限为 {limit:,} 字节。",
    "file_encoding": "提示词文件不是 UTF-8 文本（第 {position} 个字节）；请另存为 UTF-8。",
    "cannot_save": "无法保存图片：{reason}（{file}）。请管理员检查 {folder} 是否可写且有剩余空间。",
    "restarting_submit": "服务器正在重启；请一分钟后再提交。",
    "restarting_follow": "服务器正在重启。你的任务已保留，服务器恢复后会继续：一分钟后刷新页面即可继续查看，"
    "也可以在“历史”中找到它。",
    "queue_full": "队列已满：已有 {waiting} 个任务在等待，这是上限（{setting}={size}）。请在部分任务完成后再试。",
    "per_person_cap": "你已有 {mine} 个任务在排队或运行，这是每人的上限（{setting}={cap}）。"
    "请等待其中一个完成，或停止一个。",
    "not_yours": "任务 {job} 不是你的，不能停止。",
    "plain": "{text}",
    "signed_in": "已登录：**{name}**{admin} · [退出登录](logout)",
    "admin_mark": "（管理员）",
    "api_key_needed": "需要 API 密钥：请发送请求头 `Authorization: Bearer KEY`（管理员可用 python -m webui.keys add NAME 生成）。",
    "shutting_down": "服务器正在关闭；请一分钟后再试。",
    "stalled": "GPU 停止了进展；服务器正在恢复或重启。请一分钟后再试。",
    "no_job": "没有任务 {job}（可能已按保留期限删除？）。",
    "no_job_id": "没有任务 {job!r}。",
    "no_history_job": "历史中没有请求 {job!r}（可能已按保留期限删除？）。",
    "no_image": "任务 {job} 中没有第 {index} 张图片。",
    "not_saved": "任务 {job} 的第 {index} 张图片没有保存；只有已保存的图片可以加星标。",
    "job_failed": "任务失败。",
    "stopping": "将在当前步骤后停止；已完成的图片会保留。",
    "stopping_job": "任务 {job} 将在当前步骤后停止；已完成的图片会保留。",
    "pick_first": "请先在结果中选择一张图片。",
    "not_our_png": "这张 PNG 没有 Z-Image WebUI 的参数（或不是 PNG 文件）。",
    "png_field": "这张 PNG 的参数不是本工具写的：{field} 的类型不对。",
    "not_an_upload": "这个文件不是从本页面上传的；请重新上传。",
    "link_expired": "这个图片链接已过期或其密钥已更换；请重新获取任务以得到新链接。",
    "count": "{n} 条提示词 x {per} = **{images} 张图片**",
    "over_limit": " **超出上限**（{prompts} 条提示词，{images} 张图片）",
    "made": "{made} 张图片",
    "stopped_made": "已停止：保留了 {planned} 张中的 {made} 张",
    "summary": "{head}，用时 {elapsed:.1f} 秒，每秒 {rate:.2f} 张，{seeds}{demo}{black}（任务 {job}{resumed}）",
    "seed_range": "种子 {low}..{high}",
    "one_seed": "种子 {low}",
    "demo_note": "（演示模型）",
    "black": "。{n} 张图片是全黑的，没有保存（种子 {seeds}）",
    "resumed": "，续跑 {n} 次",
    "progress": lambda first, last, total, step, steps, on: (
        f"第 {first if first == last else f'{first}-{last}'} 张，共 {total} 张，"
        f"第 {step}/{steps} 步{'，在 ' + on + ' 上' if on else ''}"
    ),
    "starting": "已完成 {done}/{total} 张，正在开始",
    "ahead": "前面还有 {n} 个任务",
    "ahead_eta": "{ahead}，{eta}",
    "about_s": "约 {n} 秒",
    "about_min": "约 {n} 分钟",
    "unknown": "未知",
    "more_prompts": "（另有 {n} 条）",
    "of": "{done}/{total}",
    "you": "你",
    "someone_else": "其他人",
    "owner_you": "{owner}（你）",
    "stop_cell": "■ 停止",
    "on": "{status}，在 {where} 上",
    "queued": "排队中",
    "running": "运行中",
    "done": "完成",
    "stopped": "已停止",
    "failed": "失败",
    "queue_columns": "#|状态|提交者|提示词|图片|预计|停止|任务",
    "history_columns": "时间 (UTC)|状态|提示词|图片|尺寸|用户|请求",
    "name_seed_policy": "种子策略",
    "strength_steps": "此强度运行 **{steps} 步中的 {run} 步**（跳过前面的步骤：以图片为起点）。",
    "add_images": "这种任务需要在上方添加图片（或涂抹一个产品）。",
    "count_inputs": "{sources} 张图片 x {n} 条提示词 x {per} = **{images} 张图片**",
    "name_prompts": "提示词框",
    "name_images_per_prompt": "每个提示词的图片数",
    "name_guidance_scale": "引导系数",
    "name_negative_prompt": "反向提示词",
    "input_gone": "这张 PNG 由输入图片 {name} 生成，但该图片已不在本服务器上：表单已填入其设置（不含图片）；重新添加图片即可生成相同的画面。",
    "name_kind": "类型",
    "name_strength": "强度",
    "name_product_scale": "产品大小",
    "name_position": "位置",
    "choice": "{name} 必须是 {choices} 之一（当前为 {value!r}）。",
    "number_range": "{name} 必须是 {low:g} 到 {high:g} 之间的数（当前为 {value!r}）。",
    "inputs_for_text": "文生图任务不接受输入图片：请选择“产品入景”或“变体”，或移除图片。",
    "inputs_needed": "类型 {kind!r} 至少需要一张输入图片：请添加产品图或参考图。",
    "too_many_inputs": "输入图片过多：{count} 张（每个请求上限 {limit} 张）。",
    "strength_too_low": "强度 {strength:g} 配合 {steps} 步不会运行任何一步：请把强度提高到至少 1/{steps}，或增加步数。",
    "input_too_big": "{name} 大小为 {mb:.1f} MB；每张输入图片上限 {limit:g} MB。",
    "not_an_image": "{name} 不是可读取的图片：请上传 PNG、JPEG 或 WebP 文件。",
    "input_format": "{name} 是 {format} 文件；输入图片必须是 PNG、JPEG 或 WebP。",
    "input_pixels": "{name} 为 {width}x{height} 像素；每张输入图片上限 {limit:,} 像素（也用于阻止解压炸弹）。",
    "name_cutout": "抠图方式",
    "too_many_loras": "LoRA 过多：{count} 个（每个任务上限 {limit} 个）。",
    "lora_strength": "LoRA {name!r}：强度必须是 -2 到 2 之间的数（当前为 {value!r}）。",
    "lora_missing": "LoRA 库（{folder}）中没有名为 {name!r} 的 LoRA：请填写其中的文件名（不含 .safetensors 后缀）。",
    "lora_not_safetensors": "LoRA {name!r} 不是可读取的 safetensors 文件。",
    "lora_gone": "LoRA {name!r} 已不在库中：已载入其余设置，不含该 LoRA。",
    "lora_changed_since": "LoRA {name!r} 在这些图片生成后已更改：将使用现在的文件。",
    "lora_library_empty": "还没有 LoRA 文件：管理员可将 `.safetensors` 文件放入 LoRA 文件夹（ZIMAGE_LORA_DIR）。",
    "name_lora": "LoRA",
    "lora_table_head": "| LoRA | 大小 | 触发词或说明 |",
    "lora_file_name": "{name!r} 不是有效的 LoRA 文件名：请使用字母、数字、'.'、'_'、'-' 或空格，并以 .safetensors 结尾。",
    "lora_too_large": "LoRA {name!r} 大小为 {size:.0f} MB，上限为 {limit:g} MB（ZIMAGE_MAX_LORA_MB）。",
    "lora_exists": "库中已有名为 {name!r} 的 LoRA：请重命名文件，或请管理员先从文件夹中删除旧文件（使用它的排队任务会失败）。",
    "lora_added": "已将 LoRA {name!r} 加入库中。",
    "admins_only": "只有管理员可以执行此操作。",
    "queue_paused": "**已暂停**：{by} 自 {since} 起暂停；正在运行的调用会完成，不会开始新的调用。",
    "pick_job_first": "请先点击队列中某个任务所在的行，再移动它。",
    "bad_move": "任务只能移到最前、上移或下移（{moves}），不能是 {where!r}。",
    "model_not_served": "此服务器不提供模型 {model!r}。可用的模型：{served}。",
    "lora_not_sent": "工作进程 {worker} 缺少 LoRA {name!r}（SHA-256 {digest}...），Redis 中也没有副本："
    "请把文件放入该工作进程的 LoRA 文件夹，或重新提交任务以便网页主机发送它。",
    "lora_no_fit": "LoRA {name!r} 与当前模型不匹配（{detail}）：它是为其他模型制作的。",
    "lora_changed": "LoRA {name!r} 在任务被接受后已更改或被替换：请重新提交任务。",
    "reused_invalid": "复用的图片不是已存储输入的 [哈希, 名称] 列表：请从历史（或 /history_reuse）重新复用该任务。",
    "painted_layers": "涂抹的照片有超过 {limit} 个画笔图层；请在一个图层上涂抹。",
    "input_bomb": "{name} 的像素超过每张输入图片 {limit:,} 像素的上限（也用于阻止解压炸弹）。",
    "no_transparency": "图片没有透明像素，无法区分产品与背景：请上传带透明通道的 PNG、涂抹产品区域，或选择“纯色背景”。",
    "mask_size": "蒙版为 {mask}，而图片为 {image}：两者尺寸必须相同。",
    "nothing_to_keep": "没有要保留的内容：图片中没有任何像素被标记为产品（请涂抹产品，或使用产品不透明的图片）。",
    "nothing_to_generate": "没有要生成的内容：所有像素都被标记为产品，无法在其周围生成场景（请保留部分透明或未涂抹的背景）。",
    "scale_range": "产品大小必须在画面短边的 0.1 到 1 之间（当前为 {value!r}）。",
    "not_base64": "{name} 不是有效的 base64：请发送文件字节的 base64 编码。",
    "mask_for_variation": '{name} 带有蒙版，但变体会改变整张图片：只有类型为 "product" 时才发送蒙版。',
    "no_input": "输入图片 {digest}... 不在本服务器上（可能已被保留策略删除，或从未上传到这里）：请重新上传。",
}

CATALOGUE: dict[str, dict[str, Template]] = {ENGLISH: _EN, CHINESE: _ZH}


@dataclass(frozen=True)
class Words:
    """A message by key, with its values; said in a language by `say`, in English by str()."""

    key: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def say(self, language: str = ENGLISH) -> str:
        template = CATALOGUE.get(language, _EN).get(self.key) or _EN[self.key]
        values = {
            name: say(value, language) if _sayable(value) else value for name, value in self.values.items()
        }
        return template.format(**values) if isinstance(template, str) else template(**values)

    def __str__(self) -> str:
        return self.say(ENGLISH)


def words(key: str, **values: Any) -> Words:
    if key not in _EN:
        raise KeyError(f"no words for {key!r} in webui/words.py")
    return Words(key, values)


class Message(ValueError):
    """An error for people: str() is its English; `say(error, language)` its words in another."""

    def __init__(self, key: str, **values: Any) -> None:
        self.words = words(key, **values)
        super().__init__(str(self.words))


def say(thing: Words | BaseException | str, language: str = ENGLISH) -> str:
    """`thing` in `language`: Words and Messages by their key, anything else as it is."""
    if isinstance(thing, Words):
        return thing.say(language)
    if isinstance(thing, Message):
        return thing.words.say(language)
    return str(thing)


def _sayable(value: Any) -> bool:
    return isinstance(value, (Words, Message))


def language_of(accept_language: str | None) -> str:
    """The page's language from the browser's first choice: Simplified Chinese for zh, zh-CN,
    zh-SG and zh-Hans (as the page's labels), English otherwise."""
    first = (accept_language or "").split(",")[0].split(";")[0].strip().lower()
    if first == "zh" or first.startswith(("zh-cn", "zh-sg", "zh-hans")):
        return CHINESE
    return ENGLISH


def columns(key: str, language: str = ENGLISH) -> list[str]:
    """A table's column headers, as the catalogue lists them ("a|b|c")."""
    return words(key).say(language).split("|")
