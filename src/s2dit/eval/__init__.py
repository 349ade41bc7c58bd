"""Evaluation: the benchmarks (``s2dit bench blocks | train | stream | export``) and the autoencoder report
(``s2dit eval vae``). It sits above every package it measures; the micro world's scorer, which training uses
too, is :mod:`s2dit.data.micro.metrics`."""
