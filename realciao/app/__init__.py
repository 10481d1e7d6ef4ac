"""``realciao-app``: a local web page that upscales a photo to any size, compares the result
with bicubic, and gives it back as ``realciao-upscale`` would write it.

``service`` holds the work and knows nothing of the web (reading, upscaling, writing, the
comparison views: all through the library functions ``realciao-upscale`` and ``realciao-eval``
use); ``page`` builds the Gradio page on it and serves it on this machine only, offline.
The command (``realciao.cli.app``) loads the models and starts the page.
"""
