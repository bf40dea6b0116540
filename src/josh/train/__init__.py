"""Training on harvested data: TRL trainers with PEFT LoRA adapters (the `[train]` extra).

Importing this package imports no torch; its modules import the training stack when used."""
