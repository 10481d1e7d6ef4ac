"""Training-data preparation behind ``realciao-prepare``: sub-images, multiscale GT, BasicSR
LMDB, meta-info lists (BasicSR's and Real-ESRGAN's formats) and a GT quality screen.

Each step is a library function over a list of (image, the folder it was found under); the
shared machinery (inputs, output folders, worker processes, skipping unreadable files) is
``runner``.
"""
