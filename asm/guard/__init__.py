"""The trust boundary: who may start a run, what of an issue reaches the model, the sandbox, secrets."""
