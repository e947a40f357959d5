"""Networks behind one factory: `build_network(name, **kwargs)`."""
