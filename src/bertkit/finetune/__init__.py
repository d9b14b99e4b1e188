"""Fine-tuning: task features, heads wiring and the task runner."""
