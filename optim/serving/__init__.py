"""Serving a measured variant: a Triton model repository (`optim.deploy`), a local PyTriton server
(`optim.serve`), load generation and served accuracy (`optim.load`)."""
