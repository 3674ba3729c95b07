"""The HTTP APIs for scripts and tools, on the page's job service: REST jobs under /api/v1
(rest.py) and OpenAI's images route (openai_images.py); what they share is in common.py."""
