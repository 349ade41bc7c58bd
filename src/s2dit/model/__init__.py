"""The S2DiT transformer (docs/architecture.md §3). So far: the parts every block kind shares.

``rope`` is the 3D rotary position embedding (real cos/sin, any temporal offset); ``embeddings`` holds
patch embedding and its inverse, the per-frame timestep embedding and adaLN modulation, and the text
projection; ``layers`` holds the feed-forward network and text cross-attention with a reusable text K/V.
"""
