"""Everything that touches torch/diffusers. Never imports gradio."""
