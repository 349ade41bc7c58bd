"""Data: the procedural micro world, video-folder datasets, and (later) latent/text caches."""
