"""Latent space and text (docs/architecture.md §4): the Wan VAE with a streaming decoder, the tiny autoencoder
(the micro world's VAE, and the fast decoder distilled for another VAE), one loader for either (``vae.py``),
text encoders behind one interface and an on-disk cache of their embeddings. Their trainers live in
:mod:`s2dit.train` (``s2dit train vae``, ``s2dit train decoder``), ``s2dit data encode`` in
:mod:`s2dit.data.encode`."""
