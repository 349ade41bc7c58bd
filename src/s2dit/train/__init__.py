"""One trainer for every method (flow-matching pretraining now; KD and DMD plug in as methods)."""
