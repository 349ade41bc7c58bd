"""Training: one trainer for every denoiser method (flow-matching pretraining; the distillation stages of
:mod:`s2dit.distill` plug in as methods), and the autoencoder trainers (``vae.py``: ``s2dit train vae``;
``decoder.py``: ``s2dit train decoder``; ``clips.py``: their batches)."""
