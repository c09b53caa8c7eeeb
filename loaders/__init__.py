"""Data and noise: datasets, the noise model, and the loaders (backends) that apply it."""
