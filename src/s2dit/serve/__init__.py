"""``s2dit serve``: a local web viewer for live streaming (see :mod:`s2dit.serve.server`)."""
