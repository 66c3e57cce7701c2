"""Device profiles (TOML data files) of the simulated device; a package so wheels ship them."""
