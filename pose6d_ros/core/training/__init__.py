"""Training: the one loop for both networks, with distillation from a teacher."""
