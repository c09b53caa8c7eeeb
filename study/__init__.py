"""Training and scheduling: models, losses, the train loop, the Tune trainable and the launcher."""
