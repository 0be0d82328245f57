"""Model zoo: specs (data), adapters (behaviour), checkpoints and the registry."""
