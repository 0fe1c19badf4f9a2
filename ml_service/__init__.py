"""Archivist's ML inference service: text vectors, faces, OCR, image tags and objects over HTTP."""

__version__ = "0.1.0"
