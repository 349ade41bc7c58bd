"""2-in-1 distillation (DESIGN.md §7): the teacher trajectory cache; KD and DMD methods come next."""
