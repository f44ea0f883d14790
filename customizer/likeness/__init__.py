"""Likeness: how much a new image still looks like the character's locked reference.

One interface (scorer.Scorer) over interchangeable instruments (registry.INSTRUMENTS): the bundled-domain identity
encoder and a real face descriptor (dlib). Nothing here is imported at package import: config.py reads the registry
before any heavy import, and the UI only formats results (badge.py) without ever loading torch or dlib.
"""
