"""The Hulu-Med network: configs, vision encoder, projector, token reduction, decoder glue, checkpoints."""
