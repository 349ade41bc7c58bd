"""Latent space and text (DESIGN.md §4): the Wan VAE with a streaming decoder, the tiny autoencoder (the
micro world's VAE) and its training, text encoders behind one interface and an on-disk cache of their
embeddings. (Distilling a fast decoder for another VAE's latents comes next.) `s2dit data encode` lives in
`s2dit.data.encode`."""
