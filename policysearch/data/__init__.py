"""Data: finding a dataset (named, a folder or an archive), decoding and caching its images,
carving the four seeded splits, and reading small user files with bounds.

Modules: ``datasets`` (find, cache, size-check), ``images`` (decode one image), ``splits`` (the
four splits), ``textfile`` (bounded reading of small user files). The bottom room with the op
table: it imports nothing above ``policysearch.errors`` and ``policysearch.paths``.
"""
