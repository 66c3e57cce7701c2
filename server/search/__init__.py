"""One runner per search method: a device's LUT -> cost model -> search -> train -> export -> device -> store."""
