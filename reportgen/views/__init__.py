"""Stage 3, views: what each kind of view measures over stored results, and the figures it draws."""
