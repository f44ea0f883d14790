"""Training-side tools: the synthetic portrait renderer and corpus writer (numpy + Pillow only)."""
