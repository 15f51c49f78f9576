"""Stage 2, training: the machine, one loop per backend, the GAN, side-by-side runs and the result cache.
The only stage that imports keras."""
