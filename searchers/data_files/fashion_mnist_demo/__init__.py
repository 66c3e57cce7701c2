"""A stratified 2,000 + 500 image subset of Fashion-MNIST in gzipped IDX; see README.md here
and scripts/make_demo_subset.py for how it was made."""
