"""Network architectures rebuilt with the module names their official checkpoints use."""
