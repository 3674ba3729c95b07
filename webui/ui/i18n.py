"""The page's words in English and Simplified Chinese. Gradio picks the table that matches
the browser's language (English when none does); `t(key)` marks a label for it."""

from __future__ import annotations

import gradio as gr

ENGLISH = {
    "tab_generate": "Generate",
    "tab_history": "History",
    "prompts": "Prompts: one per line; {red|navy} makes one prompt per alternative "
    "(blank lines and lines starting with # are skipped)",
    "prompts_placeholder": "a red leather sneaker on a white seamless background, studio lighting",
    "load_prompts": "Load prompts from a .txt or .csv",
    "style": "Style, appended to every prompt",
    "style_placeholder": "studio lighting, white seamless background, 85mm",
    "generate": "Generate (Ctrl+Enter)",
    "stop": "Stop",
    "per_prompt": "Images per prompt",
    "seed": "Seed (-1: random)",
    "resolution": "Resolution",
    "width": "Width",
    "height": "Height",
    "advanced": "Advanced: steps, guidance, negative prompt, seeds",
    "steps": "Steps (8 for Turbo)",
    "guidance": "Guidance scale (0 for Turbo)",
    "negative": "Negative prompt",
    "negative_info": "Used only when the guidance scale is above 0 (then each step costs twice).",
    "seeds": "Seeds",
    "per_image": "New seed per image (seed + k)",
    "per_variant": "Same seeds for every prompt (variant j: seed + j)",
    "reuse": "Reuse a PNG's settings",
    "queue": "Queue: every team member's running and waiting jobs",
    "results": "Results",
    "download_all": "Download all (zip)",
    "contact_sheet": "Contact sheet (PNG)",
    "details": "Images: prompt, seed, size, steps, file",
    "examples": "Example prompts",
    "history_intro": "Every job, newest first, running and waiting ones included; kept across restarts. "
    "Pick one to see its images, download them, or load its settings into the form.",
    "refresh": "Refresh",
    "images": "Images",
    "load_settings": "Load these settings into the form",
    "use_seed": "Use this seed",
    "more_like": "More like this",
    "count_empty": "0 prompts x 1 = **0 images**",
    "everyone": "Everyone's jobs",
    "mine": "Mine",
    "custom": "Custom",
    "demo_banner": "**Demo model loaded.** This server runs the built-in tiny model with random weights: "
    "images are coloured noise. It is the default where no CUDA GPU is found. "
    "Set `ZIMAGE_MODEL=Tongyi-MAI/Z-Image-Turbo` where the model runs (a GPU machine) for real images.",
    # The address it listens on follows.
    "exposed_banner": "**Open to the network without a login.** Anyone who can reach this server can "
    "generate images; an admin can set ZIMAGE_AUTH_USER and ZIMAGE_AUTH_PASSWORD. It listens on",
    "picked_prompt": "Picked image: its prompt",
    "star": "☆ Star",
    "unstar": "★ Starred (click to unstar)",
    "download_png": "Download PNG",
    "inputs": "Product or reference images",
    "kind": "What the images are for",
    "kind_text": "Nothing: prompts only",
    "kind_product": "Product in scene: keep the product, generate the scene",
    "kind_variation": "Variations of each image",
    "input_files": "Images (PNG, JPEG or WebP; several at once: a product line)",
    "cutout": "How the product is found",
    "cutout_auto": "Transparency (a cut-out PNG) or the area painted below",
    "cutout_plain": "Plain background (its colour removed)",
    "painted": "Or paint the product on a photo (brush over the product)",
    "product_scale": "Product size (share of the shorter side)",
    "position": "Position",
    "position_center": "Centre",
    "position_bottom": "Standing on the lower edge",
    "position_frame": "As it is (fills the frame)",
    "strength": "Variation strength (0 keeps the image, 1 ignores it)",
    "preview": "What the job starts from",
    "download_starred": "Download starred (zip)",
}

CHINESE = {
    "tab_generate": "生成",
    "tab_history": "历史",
    "prompts": "提示词：每行一条；{red|navy} 会为每个选项各生成一条提示词（空行和以 # 开头的行会被跳过）",
    "prompts_placeholder": "白色无缝背景上的一只红色皮革运动鞋，影棚灯光",
    "load_prompts": "从 .txt 或 .csv 文件载入提示词",
    "style": "风格（追加到每条提示词之后）",
    "style_placeholder": "影棚灯光，白色无缝背景，85mm",
    "generate": "生成 (Ctrl+Enter)",
    "stop": "停止",
    "per_prompt": "每条提示词的图片数",
    "seed": "种子（-1：随机）",
    "resolution": "分辨率",
    "width": "宽度",
    "height": "高度",
    "advanced": "高级：步数、引导系数、负面提示词、种子",
    "steps": "步数（Turbo 用 8）",
    "guidance": "引导系数（Turbo 用 0）",
    "negative": "负面提示词",
    "negative_info": "仅在引导系数大于 0 时使用（此时每一步的计算量翻倍）。",
    "seeds": "种子策略",
    "per_image": "每张图片一个新种子（seed + k）",
    "per_variant": "每条提示词使用相同的种子（第 j 个变体：seed + j）",
    "reuse": "复用 PNG 图片的设置",
    "queue": "队列：所有团队成员正在运行和等待的任务",
    "results": "结果",
    "download_all": "全部下载（zip）",
    "contact_sheet": "缩略图总览（PNG）",
    "details": "图片：提示词、种子、尺寸、步数、文件",
    "examples": "示例提示词",
    "history_intro": "所有任务，最新的在前，包括正在运行和等待的任务；重启后仍然保留。"
    "选择一个任务可查看其图片、下载，或将其设置载入表单。",
    "refresh": "刷新",
    "images": "图片",
    "load_settings": "将这些设置载入表单",
    "use_seed": "使用此种子",
    "more_like": "更多类似的",
    "count_empty": "0 条提示词 x 1 = **0 张图片**",
    "everyone": "所有人的任务",
    "mine": "我的",
    "custom": "自定义",
    "demo_banner": "**已载入演示模型。** 本服务器运行的是内置的随机权重小模型：生成的图片是彩色噪声。"
    "未找到 CUDA GPU 时默认使用它。在运行模型的机器（GPU 机器）上设置 `ZIMAGE_MODEL=Tongyi-MAI/Z-Image-Turbo` 即可生成真实图片。",
    "exposed_banner": "**未设登录即对网络开放。** 任何能访问本服务器的人都可以生成图片；"
    "管理员可以设置 ZIMAGE_AUTH_USER 和 ZIMAGE_AUTH_PASSWORD。监听地址：",
    "picked_prompt": "所选图片的提示词",
    "star": "☆ 加星标",
    "unstar": "★ 已加星标（点击取消）",
    "download_png": "下载 PNG",
    "inputs": "产品图或参考图",
    "kind": "图片的用途",
    "kind_text": "不使用：仅用提示词",
    "kind_product": "产品入景：保留产品，生成场景",
    "kind_variation": "每张图片的变体",
    "input_files": "图片（PNG、JPEG 或 WebP；可一次上传多张：一个产品系列）",
    "cutout": "如何识别产品",
    "cutout_auto": "透明通道（抠图 PNG）或下方涂抹的区域",
    "cutout_plain": "纯色背景（去除该颜色）",
    "painted": "或在照片上涂抹产品（用画笔覆盖产品）",
    "product_scale": "产品大小（占短边的比例）",
    "position": "位置",
    "position_center": "居中",
    "position_bottom": "立于下边缘",
    "position_frame": "保持原样（填满画面）",
    "strength": "变体强度（0 保持原图，1 忽略原图）",
    "preview": "任务的起始图片",
    "download_starred": "下载已加星标的图片（zip）",
}

# "zh" too: a browser that says only "zh" gets Simplified Chinese (as webui/words.py answers it).
I18N = gr.I18n(en=ENGLISH, zh=CHINESE, **{"zh-CN": CHINESE})


def t(key: str) -> gr.i18n.I18nData:
    """A label Gradio shows in the browser's language."""
    if key not in ENGLISH:
        raise KeyError(f"no words for {key!r} in webui/ui/i18n.py")
    return I18N(key)
