"""Training and evaluation data generated from the ICT model."""
