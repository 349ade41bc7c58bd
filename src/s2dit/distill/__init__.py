"""2-in-1 distillation (docs/architecture.md §7): the teacher trajectory cache (``cache.py``), Stage A's
cached KD (``kd.py``), Stage B's causal ODE regression (``causal_ode.py``) and DMD with self-forcing
(``dmd.py``); ``methods.py`` registers the three with the trainer by their ``method:`` names. Their settings
are the training config's ``distill:`` section (:class:`s2dit.train.config.DistillConfig`)."""
