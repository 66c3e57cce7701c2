"""LUTs: op micro-models (``micromodels``), building them on agents (``builder``), import/export (``io``),
whole-network prediction (``predict``), its fidelity against measurements (``fidelity``) and how
repeated measurements combine (``rounds``)."""
