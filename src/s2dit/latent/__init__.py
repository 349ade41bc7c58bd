"""Latent space and text (DESIGN.md §4). So far: the Wan VAE with a streaming decoder, text encoders behind
one interface, and an on-disk cache of their embeddings. (The tiny autoencoder and `s2dit data encode` come
next.)"""
