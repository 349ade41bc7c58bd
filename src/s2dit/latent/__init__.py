"""Latent space and text (DESIGN.md §4). So far: text encoders behind one interface and an on-disk cache of
their embeddings. (The Wan VAE wrapper, the tiny autoencoder and `s2dit data encode` come next.)"""
