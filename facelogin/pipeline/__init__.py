"""The face-recognition pipeline: decode → detect → quality → align → embed → classify → decide.

A plain package: it imports nothing from Django (tests/pipeline/test_boundaries.py proves it).
Configuration arrives as arguments; ``facelogin.services.recognition`` is the one bridge from settings.
Heavy models load lazily, once per process, never at import time.
"""
